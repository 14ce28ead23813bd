// Reference renderer for keel-gotmpl's differential tests: Go's text/template
// with sprig's text function map and Helm's toYaml/toJson/fromJson, reading one
// JSON case per line on stdin and writing one JSON result per line on stdout.
// Built with Debian's golang-go and golang-github-masterminds-sprig-dev.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
	"time"

	sprig "github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type tcase struct {
	Tmpl    string          `json:"tmpl"`
	Data    json.RawMessage `json:"data"`
	Ints    bool            `json:"ints"`
	Missing string          `json:"missing"`
	Repeat  int             `json:"repeat"`
}

type result struct {
	Out string `json:"out"`
	Err string `json:"err,omitempty"`
	Ns  int64  `json:"ns"`
}

func convert(v interface{}, ints bool) interface{} {
	switch t := v.(type) {
	case json.Number:
		if ints && !strings.ContainsAny(string(t), ".eE") {
			if i, err := t.Int64(); err == nil {
				return i
			}
		}
		f, _ := t.Float64()
		return f
	case map[string]interface{}:
		for k, e := range t {
			t[k] = convert(e, ints)
		}
		return t
	case []interface{}:
		for i, e := range t {
			t[i] = convert(e, ints)
		}
		return t
	}
	return v
}

// toYaml as sigs.k8s.io/yaml does it: JSON, then go-yaml v2.
func toYaml(v interface{}) string {
	j, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var obj interface{}
	if err := yaml.Unmarshal(j, &obj); err != nil {
		return ""
	}
	out, err := yaml.Marshal(obj)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func toJson(v interface{}) string {
	d, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(d)
}

func fromJson(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func main() {
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYaml
	funcs["toJson"] = toJson
	funcs["fromJson"] = fromJson
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	for in.Scan() {
		var c tcase
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "bad case:", err)
			os.Exit(2)
		}
		var data interface{}
		if len(c.Data) > 0 {
			d := json.NewDecoder(bytes.NewReader(c.Data))
			d.UseNumber()
			if err := d.Decode(&data); err != nil {
				fmt.Fprintln(os.Stderr, "bad data:", err)
				os.Exit(2)
			}
			data = convert(data, c.Ints)
		}
		var r result
		start := time.Now()
		t := template.New("t").Funcs(funcs)
		switch c.Missing {
		case "zero":
			t.Option("missingkey=zero")
		case "error":
			t.Option("missingkey=error")
		}
		t, err := t.Parse(c.Tmpl)
		if err != nil {
			r.Err = err.Error()
		} else {
			n := c.Repeat
			if n < 1 {
				n = 1
			}
			for i := 0; i < n; i++ {
				var buf strings.Builder
				if err := t.Execute(&buf, data); err != nil {
					r.Err = err.Error()
				}
				r.Out = buf.String()
			}
		}
		r.Ns = time.Since(start).Nanoseconds()
		enc.Encode(r)
	}
	out.Flush()
}
