//! The chart parsers never panic: `--set` strings, Chart.yaml, values and
//! templates of arbitrary content give errors, not crashes.

use keel_chart::{ChartFile, SetKind, Table, TemplateOptions};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn set_strings(s in "[a-z0-9.,=\\[\\]{}\\\\ \"-]{0,40}") {
        for kind in [SetKind::Typed, SetKind::String, SetKind::Json, SetKind::Literal, SetKind::File] {
            let mut t = Table::new();
            let _ = keel_chart::values::parse_set(&s, kind, &mut t, &|_| Ok(String::new()));
        }
    }

    #[test]
    fn chart_files(chart_yaml in "\\PC{0,80}", values in "\\PC{0,80}", tpl in "\\PC{0,80}") {
        let files = vec![
            ChartFile { name: "Chart.yaml".into(), data: chart_yaml.into_bytes() },
            ChartFile { name: "values.yaml".into(), data: values.into_bytes() },
            ChartFile { name: "templates/x.yaml".into(), data: tpl.into_bytes() },
        ];
        if let Ok(c) = keel_chart::chart::from_files("p", files) {
            let _ = keel_chart::render(&c, &Table::new(), &TemplateOptions::default());
        }
    }

    #[test]
    fn rendered_yaml(tpl in "(a: |b|\\n|---|  |- x|\\{\\{ \\.Values \\}\\}|: |#|\\[|\\]){0,30}") {
        let files = vec![
            ChartFile { name: "Chart.yaml".into(), data: b"apiVersion: v2\nname: p\nversion: 1.0.0\n".to_vec() },
            ChartFile { name: "templates/x.yaml".into(), data: tpl.into_bytes() },
        ];
        let c = keel_chart::chart::from_files("p", files).unwrap();
        if let Ok(r) = keel_chart::render(&c, &Table::new(), &TemplateOptions::default()) {
            let _ = keel_chart::template_text(&r, &TemplateOptions::default());
        }
    }
}
