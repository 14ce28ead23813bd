//! Terraform's `http` state backend, served under `/infra/state/NAME`: GET,
//! POST (`?ID=` of the lock held) and DELETE the state; LOCK and UNLOCK with
//! terraform's `LockInfo` JSON, answering 423 Locked with the holder's
//! `LockInfo` when the lock is taken. State and locks are keys in the store
//! (`/keel/infra/state/NAME`, `/keel/infra/lock/NAME`), so they share its
//! durability and authentication is keel's tokens (Bearer, or HTTP Basic
//! with the token as password, which terraform's http backend sends).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use keel_store::StoreError;

use crate::State;
use crate::http::{Body, Fail, fail_response};

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && n != "."
        && n != ".."
}

fn reply(code: u16, content_type: &str, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("static response parts are valid")
}

fn store_fail(e: &StoreError) -> Response<Body> {
    fail_response(&Fail::internal(e))
}

fn lock_id(info: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(info)
        .ok()?
        .get("ID")?
        .as_str()
        .map(str::to_string)
}

/// Handles one request for state `name`.
pub(crate) async fn handle(state: &State, req: Request<Incoming>, name: &str) -> Response<Body> {
    if !valid_name(name) {
        return fail_response(&Fail::bad_request(format!("invalid state name {name:?}")));
    }
    let method = req.method().as_str().to_string();
    let lock_param = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("ID=")))
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return fail_response(&Fail::bad_request(format!("reading body: {e}"))),
    };
    let skey = format!("/keel/infra/state/{name}");
    let lkey = format!("/keel/infra/lock/{name}");
    let store = &state.store;
    let held = match store.get(&lkey).await {
        Ok(v) => v,
        Err(e) => return store_fail(&e),
    };
    match method.as_str() {
        "GET" => match store.get(&skey).await {
            Ok(Some(kv)) => reply(200, "application/json", kv.value),
            Ok(None) => reply(404, "text/plain", b"no state".to_vec()),
            Err(e) => store_fail(&e),
        },
        "POST" => {
            if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                return fail_response(&Fail::bad_request("state must be JSON"));
            }
            // A locked state takes writes only from the lock's holder.
            if let Some(l) = &held
                && lock_param.as_deref() != lock_id(&l.value).as_deref()
            {
                return reply(423, "application/json", l.value.clone());
            }
            let res = match store.get(&skey).await {
                Ok(Some(kv)) => store
                    .update(&skey, body, kv.mod_revision, 0)
                    .await
                    .map(|_| ()),
                Ok(None) => store.create(&skey, body, 0).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => reply(200, "text/plain", Vec::new()),
                Err(e) => store_fail(&e),
            }
        }
        "DELETE" => {
            if let Some(l) = &held
                && lock_param.as_deref() != lock_id(&l.value).as_deref()
            {
                return reply(423, "application/json", l.value.clone());
            }
            match store.delete(&skey, None).await {
                Ok(_) | Err(StoreError::NotFound(_)) => reply(200, "text/plain", Vec::new()),
                Err(e) => store_fail(&e),
            }
        }
        "LOCK" => {
            if lock_id(&body).is_none() {
                return fail_response(&Fail::bad_request("LOCK needs terraform's LockInfo JSON"));
            }
            match store.create(&lkey, body, 0).await {
                Ok(_) => reply(200, "text/plain", Vec::new()),
                Err(StoreError::AlreadyExists(_)) => match store.get(&lkey).await {
                    Ok(Some(kv)) => reply(423, "application/json", kv.value),
                    Ok(None) => reply(409, "text/plain", b"lock changed; retry".to_vec()),
                    Err(e) => store_fail(&e),
                },
                Err(e) => store_fail(&e),
            }
        }
        "UNLOCK" => {
            let Some(l) = held else {
                return reply(200, "text/plain", Vec::new());
            };
            // terraform force-unlock sends only the ID it was given.
            let given = lock_id(&body).or(lock_param);
            if given.is_some() && given != lock_id(&l.value) {
                return reply(423, "application/json", l.value);
            }
            match store.delete(&lkey, Some(l.mod_revision)).await {
                Ok(_) | Err(StoreError::NotFound(_)) => reply(200, "text/plain", Vec::new()),
                Err(e) => store_fail(&e),
            }
        }
        other => reply(
            405,
            "text/plain",
            format!("method {other} not allowed").into_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn state_names_stay_in_their_key_space() {
        assert!(valid_name("prod-1.eu_west"));
        for bad in ["", "..", "a/b", "a b", "x?y"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
