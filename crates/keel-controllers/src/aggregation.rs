//! The clusterrole-aggregation controller: a `ClusterRole` with an
//! `aggregationRule` gets as its rules the union of the rules of the
//! `ClusterRoles` its selectors match, kept current as those change (how
//! `admin`, `edit` and `view` pick up the `aggregate-to-*` roles charts add
//! for their custom resources).

use std::time::Duration;

use keel_api::resources::{self, Resource};
use keel_api::{ClientError, Loopback};
use serde_json::{Value, json};

use crate::MANAGER;
use crate::objects::meta_str;

fn cluster_roles() -> &'static Resource {
    resources::find(keel_api::rbac::GROUP, "v1", "clusterroles").expect("RBAC is served")
}

/// Runs until the runtime stops.
pub async fn run(api: Loopback) {
    let r = cluster_roles();
    loop {
        let rev = match sync(&api).await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(error = %e, "clusterrole aggregation failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut watch) = api.watch(r, rev + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        // Any change may alter an aggregate: recompute all (there are few).
        while let Some(Ok(ev)) = watch.next().await {
            if matches!(ev, keel_api::client::WatchEvent::Change(_))
                && let Err(e) = sync(&api).await
            {
                tracing::warn!(error = %e, "clusterrole aggregation failed");
                break;
            }
        }
    }
}

/// Writes every aggregated role whose rules are out of date; returns the
/// revision it read.
async fn sync(api: &Loopback) -> Result<i64, ClientError> {
    let r = cluster_roles();
    let (roles, rev) = api.list(r, None).await?;
    for role in &roles {
        let Some(rules) = keel_api::rbac::aggregate(role, &roles) else {
            continue;
        };
        let want = json!(rules);
        if role.get("rules").unwrap_or(&Value::Null) == &want
            || (want == json!([]) && role.get("rules").is_none())
        {
            continue;
        }
        let name = meta_str(role, "name");
        tracing::info!(clusterrole = name, rules = rules.len(), "aggregating rules");
        api.modify(r, None, name, None, MANAGER, |cur| {
            let mut v = cur.clone();
            let fresh = keel_api::rbac::aggregate(cur, &roles)?;
            v["rules"] = json!(fresh);
            (v != *cur).then_some(v)
        })
        .await?;
    }
    Ok(rev)
}
