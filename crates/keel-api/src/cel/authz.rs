//! Kubernetes' CEL authorizer library: the `authorizer` variable of
//! `ValidatingAdmissionPolicy` expressions and admission webhooks'
//! `matchConditions`, asking RBAC whether the requesting user (or a
//! service account) may do something else:
//! `authorizer.group('apps').resource('deployments').namespace('ns').check('delete').allowed()`,
//! `authorizer.path('/metrics').check('get')`,
//! `authorizer.serviceAccount('ns', 'sa')...`, and
//! `authorizer.requestResource.check('approve')` for the resource of the
//! request being admitted. Decisions answer `allowed()`, `reason()`,
//! `errored()` and `error()`. As in the API server's own chain, a node's
//! credential is asked of the Node authorizer first, then of RBAC.
//!
//! cel-rust selects fields only on maps, so `authorizer` is a map holding
//! `requestResource` and, under a key no identifier can spell, the
//! user the checks are made for.

use std::sync::Arc;

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, ExecutionError, Value};

use crate::State;
use crate::auth::{Attributes, User};
use crate::rbac::Checker;

/// Where `authorizer` keeps whom it checks for.
const WHO: &str = "\0authorizer";

/// Whom checks are made for, and the index they are made against.
#[derive(Debug)]
struct Who {
    user: User,
    authorizers: Authorizers,
}

/// What decides a check: RBAC's index, and for node credentials the Node
/// authorizer, which looks pods up in the store (async: the CEL thread
/// blocks on the server's runtime for it).
#[derive(Debug, Clone)]
pub(crate) struct Authorizers {
    rbac: Checker,
    node: Option<(tokio::runtime::Handle, std::sync::Weak<State>)>,
}

impl Authorizers {
    pub(crate) fn of(state: &State) -> Self {
        Authorizers {
            rbac: state.rbac.checker(),
            node: tokio::runtime::Handle::try_current()
                .ok()
                .map(|rt| (rt, state.me.clone())),
        }
    }

    /// Node authorizer, then RBAC: the reason when allowed.
    fn allows(&self, user: &User, a: &Attributes) -> Option<String> {
        if crate::node_authz::node_of(user).is_some()
            // Blocking is only possible off the runtime's own threads (CEL
            // evaluations run on threads of their own).
            && tokio::runtime::Handle::try_current().is_err()
            && let Some((rt, state)) = &self.node
            && let Some(state) = state.upgrade()
            && let Some((true, why)) =
                rt.block_on(crate::node_authz::authorize(&state, user, a))
        {
            return Some(why);
        }
        self.rbac.allows(user, a)
    }
}

/// A check being built: `authorizer.group(g)` (no resource yet),
/// `.resource(r)`, `.subresource(s)`, `.namespace(ns)`, `.name(n)`, or
/// `authorizer.path(p)`.
#[derive(Debug, Clone)]
struct Check {
    who: Arc<Who>,
    group: String,
    resource: Option<String>,
    subresource: String,
    namespace: String,
    name: String,
    path: Option<String>,
}

impl PartialEq for Check {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.who, &o.who)
            && (&self.group, &self.resource, &self.subresource)
                == (&o.group, &o.resource, &o.subresource)
            && (&self.namespace, &self.name, &self.path) == (&o.namespace, &o.name, &o.path)
    }
}
impl Eq for Check {}

impl cel::objects::Opaque for Check {
    fn runtime_type_name(&self) -> &'static str {
        if self.path.is_some() {
            "kubernetes.authorization.PathCheck"
        } else if self.resource.is_some() {
            "kubernetes.authorization.ResourceCheck"
        } else {
            "kubernetes.authorization.GroupCheck"
        }
    }
}

/// The opaque holder of [`Who`] inside the `authorizer` map.
#[derive(Debug)]
struct WhoRef(Arc<Who>);

impl PartialEq for WhoRef {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }
}
impl Eq for WhoRef {}

impl cel::objects::Opaque for WhoRef {
    fn runtime_type_name(&self) -> &'static str {
        "kubernetes.authorization.Authorizer"
    }
}

/// What RBAC decided.
#[derive(Debug, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    reason: String,
}

impl cel::objects::Opaque for Decision {
    fn runtime_type_name(&self) -> &'static str {
        "kubernetes.authorization.Decision"
    }
}

/// The resource of the request being admitted, for `requestResource`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestResource {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

/// The `authorizer` variable for `user`.
pub(crate) fn variable(
    authorizers: Authorizers,
    user: User,
    request: Option<RequestResource>,
) -> Value {
    let who = Arc::new(Who { user, authorizers });
    let mut map = std::collections::HashMap::new();
    if let Some(r) = request {
        let check = Check {
            who: who.clone(),
            group: r.group,
            resource: Some(r.resource),
            subresource: r.subresource,
            namespace: r.namespace,
            name: r.name,
            path: None,
        };
        map.insert(
            Key::String(Arc::new("requestResource".into())),
            Value::Opaque(Arc::new(check)),
        );
    }
    map.insert(
        Key::String(Arc::new(WHO.into())),
        Value::Opaque(Arc::new(WhoRef(who))),
    );
    Value::Map(Map { map: Arc::new(map) })
}

fn no_overload(f: &str) -> ExecutionError {
    ExecutionError::function_error(f, "no such overload")
}

fn who_of(v: &Value, f: &str) -> Result<Arc<Who>, ExecutionError> {
    let Value::Map(m) = v else {
        return Err(no_overload(f));
    };
    match m.map.get(&Key::String(Arc::new(WHO.into()))) {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<WhoRef>()
            .map(|w| w.0.clone())
            .ok_or_else(|| no_overload(f)),
        _ => Err(no_overload(f)),
    }
}

fn check_of(v: &Value, f: &str) -> Result<Check, ExecutionError> {
    match v {
        Value::Opaque(o) => o
            .downcast_ref::<Check>()
            .cloned()
            .ok_or_else(|| no_overload(f)),
        _ => Err(no_overload(f)),
    }
}

fn decision_of<'a>(v: &'a Value, f: &str) -> Result<&'a Decision, ExecutionError> {
    match v {
        Value::Opaque(o) => o.downcast_ref::<Decision>().ok_or_else(|| no_overload(f)),
        _ => Err(no_overload(f)),
    }
}

fn opaque(c: Check) -> Value {
    Value::Opaque(Arc::new(c))
}

/// A builder step on a resource check (`subresource`, `namespace`, `name`).
fn set_field(ctx: &mut Context, f: &'static str, set: fn(&mut Check, String)) {
    let _ = ctx.add_function(
        f,
        move |This(c): This<Value>, v: Arc<String>| -> Result<Value, ExecutionError> {
            let mut c = check_of(&c, f)?;
            if c.resource.is_none() {
                return Err(no_overload(f));
            }
            set(&mut c, v.to_string());
            Ok(opaque(c))
        },
    );
}

/// Adds the library's functions to `ctx`.
pub(crate) fn library(ctx: &mut Context) {
    let _ = ctx.add_function(
        "group",
        |This(a): This<Value>, g: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(opaque(Check {
                who: who_of(&a, "group")?,
                group: g.to_string(),
                resource: None,
                subresource: String::new(),
                namespace: String::new(),
                name: String::new(),
                path: None,
            }))
        },
    );
    let _ = ctx.add_function(
        "path",
        |This(a): This<Value>, p: Arc<String>| -> Result<Value, ExecutionError> {
            Ok(opaque(Check {
                who: who_of(&a, "path")?,
                group: String::new(),
                resource: None,
                subresource: String::new(),
                namespace: String::new(),
                name: String::new(),
                path: Some(p.to_string()),
            }))
        },
    );
    let _ = ctx.add_function(
        "serviceAccount",
        |This(a): This<Value>,
         ns: Arc<String>,
         name: Arc<String>|
         -> Result<Value, ExecutionError> {
            let who = who_of(&a, "serviceAccount")?;
            let user = User::new(
                &format!("system:serviceaccount:{ns}:{name}"),
                &[
                    "system:serviceaccounts",
                    &format!("system:serviceaccounts:{ns}"),
                    crate::auth::AUTHENTICATED,
                ],
            );
            Ok(variable(who.authorizers.clone(), user, None))
        },
    );
    let _ = ctx.add_function(
        "resource",
        |This(c): This<Value>, r: Arc<String>| -> Result<Value, ExecutionError> {
            let mut c = check_of(&c, "resource")?;
            if c.resource.is_some() || c.path.is_some() {
                return Err(no_overload("resource"));
            }
            c.resource = Some(r.to_string());
            Ok(opaque(c))
        },
    );
    set_field(ctx, "subresource", |c, v| c.subresource = v);
    set_field(ctx, "namespace", |c, v| c.namespace = v);
    set_field(ctx, "name", |c, v| c.name = v);
    let _ = ctx.add_function(
        "check",
        |This(c): This<Value>, verb: Arc<String>| -> Result<Value, ExecutionError> {
            let c = check_of(&c, "check")?;
            if c.resource.is_none() && c.path.is_none() {
                return Err(no_overload("check"));
            }
            let a = Attributes {
                verb: verb.to_string(),
                group: c.group,
                resource: c.resource.unwrap_or_default(),
                subresource: c.subresource,
                namespace: c.namespace,
                name: c.name,
                path: c.path,
            };
            let why = c.who.authorizers.allows(&c.who.user, &a);
            Ok(Value::Opaque(Arc::new(Decision {
                allowed: why.is_some(),
                reason: why.unwrap_or_default(),
            })))
        },
    );
    let _ = ctx.add_function(
        "allowed",
        |This(d): This<Value>| -> Result<bool, ExecutionError> {
            Ok(decision_of(&d, "allowed")?.allowed)
        },
    );
    let _ = ctx.add_function(
        "reason",
        |This(d): This<Value>| -> Result<Value, ExecutionError> {
            Ok(Value::String(Arc::new(
                decision_of(&d, "reason")?.reason.clone(),
            )))
        },
    );
    // keel's RBAC decides from an index in memory: a check never errors.
    let _ = ctx.add_function(
        "errored",
        |This(d): This<Value>| -> Result<bool, ExecutionError> {
            decision_of(&d, "errored").map(|_| false)
        },
    );
    let _ = ctx.add_function(
        "error",
        |This(d): This<Value>| -> Result<Value, ExecutionError> {
            decision_of(&d, "error").map(|_| Value::String(Arc::new(String::new())))
        },
    );
}
