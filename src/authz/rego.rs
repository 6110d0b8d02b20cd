//! Rego policies (the language of Open Policy Agent), decided in process by `regorus`: no
//! network hop per decision, the same principal, rejections and audit trail as the role rules.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use percent_encoding::percent_decode_str;
use std::cell::RefCell;
use std::sync::Mutex;

use regorus::{Engine as Interpreter, PolicyModule, Value};

use super::engine::{DecisionRequest, Engine, EngineDecision, PolicyEngine};
use crate::error::ConfigError;

/// The query decided by default: a policy in package `zerotrust.authz` with an `allow` rule.
pub const DEFAULT_QUERY: &str = "data.zerotrust.authz.allow";

/// Headers never put into a policy's input: they carry credentials, and a policy that logs or
/// returns its input must not leak them.
const CREDENTIAL_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "x-signature",
    "x-nonce",
    "signature",
    "signature-input",
    "x-api-key",
];

/// A Rego policy deciding requests: give it to
/// [`Require::engine`](super::Require::engine) for a route, to
/// [`otherwise`](super::AuthorizeConfigBuilder::otherwise) for a whole service, or to
/// [`candidate`](super::AuthorizeConfigBuilder::candidate) to compare it with the rules in
/// force. Cheap to clone; clones share the policy, and [`reload`](Self::reload) replaces it for
/// all of them.
///
/// The query (default [`DEFAULT_QUERY`]) must give `true` or `false`, or an object
/// `{"allowed": bool, "reason": string}` whose reason goes into the audit event. Anything else
/// denies with a reason code of its own, logged: `authz.policy_undefined` (no value),
/// `authz.policy_error` (evaluation failed), `authz.policy_invalid` (another type); a plain
/// refusal is `authz.policy_denied`.
///
/// The input document carries this crate's view and that of OPA's Envoy plugin, so policies
/// written for the plugin run unchanged:
///
/// | field | content |
/// |---|---|
/// | `input.principal` | `id`, `method` (`hmac`, `jwt`, `mtls`, `httpsig`), `roles`, and `claims` for a token; `null` when nobody was proven |
/// | `input.request` | `method`, `path`, `query` (`null` without one), `headers`, and `grpc` (`service`, `method`) for gRPC calls |
/// | `input.source.ip` | the connection's peer address, when known |
/// | `input.attributes.request.http` | `method`, `path` (with the query), `host`, `headers` (as Envoy gives them) |
/// | `input.parsed_path` | the path's segments, percent-decoded |
/// | `input.parsed_query` | each query parameter's values, percent-decoded |
///
/// Headers are lowercase names mapped to their values (several joined by `, `);
/// `authorization`, `proxy-authorization`, `cookie`, `x-signature`, `x-nonce`, `signature`,
/// `signature-input` and `x-api-key` are never put in.
///
/// ```
/// use tower_zerotrust::authz::{AuthorizeConfig, Policy, RegoPolicy, Require};
///
/// # fn main() -> Result<(), tower_zerotrust::ConfigError> {
/// let rego = RegoPolicy::builder()
///     .policy(r#"
///         package zerotrust.authz
///         default allow := false
///         allow if input.request.method == "GET"
///         allow if "admin" in input.principal.roles
///     "#)
///     .build()?;
/// let config = AuthorizeConfig::builder(Policy::example_roles())
///     .otherwise(Require::engine(rego))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RegoPolicy {
    inner: Arc<Inner>,
}

/// A compiled policy: an interpreter ready to evaluate, cloned once per thread that decides
/// (an interpreter evaluates one input at a time, and making one per decision costs a fifth
/// of the decision).
struct Compiled {
    prototype: Mutex<Interpreter>,
}

thread_local! {
    /// This thread's interpreters, by the compiled policy they were cloned from.
    static INTERPRETERS: RefCell<Vec<(std::sync::Weak<Compiled>, Interpreter)>> =
        const { RefCell::new(Vec::new()) };
}

struct Inner {
    compiled: ArcSwap<Compiled>,
    source: Source,
    query: Arc<str>,
}

/// Where the policy and its data come from.
#[derive(Debug, Clone)]
enum Text {
    Given(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
struct Source {
    policy: Text,
    data: Option<Text>,
}

/// Builds a [`RegoPolicy`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RegoPolicyBuilder {
    policy: Option<Text>,
    data: Option<Text>,
    query: String,
}

impl RegoPolicy {
    /// A builder deciding [`DEFAULT_QUERY`].
    pub fn builder() -> RegoPolicyBuilder {
        RegoPolicyBuilder {
            policy: None,
            data: None,
            query: DEFAULT_QUERY.to_owned(),
        }
    }

    /// Reads the policy (and its data) again from their files and swaps them in for every
    /// request that starts after. A policy that does not compile, or data that is not a JSON
    /// object, is refused and the policy in force stays (logged at warn level).
    ///
    /// # Errors
    ///
    /// What was wrong with the new files.
    pub fn reload(&self) -> Result<(), ConfigError> {
        match compile(&self.inner.source, &self.inner.query) {
            Ok(compiled) => {
                self.inner.compiled.store(Arc::new(compiled));
                tracing::info!(target: "tower_zerotrust::authz", "Rego policy reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::authz", %error, "Rego policy not reloaded; the previous one stays");
                Err(error)
            }
        }
    }

    /// Calls [`reload`](Self::reload) every `interval` on the current tokio runtime.
    pub fn reload_every(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let policy = self.clone();
        crate::periodic::every(interval, false, move || {
            let _ = policy.reload();
        })
    }

    fn evaluate(&self, input: Value) -> EngineDecision {
        let deny = |code, reason| EngineDecision::Deny { code, reason };
        let compiled = self.inner.compiled.load_full();
        let result = INTERPRETERS.with(|cell| {
            let mut interpreters = cell.borrow_mut();
            // Interpreters of policies reloaded or dropped since are dropped here.
            interpreters.retain(|(of, _)| of.strong_count() > 0);
            let at = match interpreters
                .iter()
                .position(|(of, _)| std::ptr::eq(of.as_ptr(), Arc::as_ptr(&compiled)))
            {
                Some(at) => at,
                None => {
                    let clone = compiled
                        .prototype
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .clone();
                    interpreters.push((Arc::downgrade(&compiled), clone));
                    interpreters.len() - 1
                }
            };
            let interpreter = &mut interpreters[at].1;
            interpreter.set_input(input);
            interpreter.eval_rule(self.inner.query.to_string())
        });
        match result {
            Ok(Value::Bool(true)) => EngineDecision::Allow,
            Ok(Value::Bool(false)) => deny("authz.policy_denied", None),
            Ok(Value::Undefined) => deny("authz.policy_undefined", None),
            Ok(Value::Object(object)) => {
                let field = |name: &str| object.get(&Value::from(name)).cloned();
                let reason = match field("reason") {
                    Some(Value::String(reason)) => Some(reason.to_string()),
                    _ => None,
                };
                match field("allowed") {
                    Some(Value::Bool(true)) => EngineDecision::Allow,
                    Some(Value::Bool(false)) => deny("authz.policy_denied", reason),
                    _ => self.invalid("an object without a boolean `allowed`"),
                }
            }
            Ok(_) => self.invalid("neither a boolean nor an object"),
            Err(error) => {
                tracing::warn!(target: "tower_zerotrust::authz", query = &*self.inner.query, %error, "Rego evaluation failed; denying");
                deny("authz.policy_error", Some(error.to_string()))
            }
        }
    }

    fn invalid(&self, what: &str) -> EngineDecision {
        tracing::warn!(target: "tower_zerotrust::authz", query = &*self.inner.query, "Rego decision is {what}; denying");
        EngineDecision::Deny {
            code: "authz.policy_invalid",
            reason: Some(format!("the decision is {what}")),
        }
    }
}

impl PolicyEngine for RegoPolicy {
    fn decide(&self, request: &DecisionRequest<'_>) -> EngineDecision {
        self.evaluate(input(request))
    }
}

impl From<RegoPolicy> for Engine {
    fn from(policy: RegoPolicy) -> Self {
        Engine::new(policy)
    }
}

impl std::fmt::Debug for RegoPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegoPolicy")
            .field("query", &self.inner.query)
            .finish_non_exhaustive()
    }
}

impl RegoPolicyBuilder {
    /// The policy's Rego source.
    pub fn policy(mut self, rego: impl Into<String>) -> Self {
        self.policy = Some(Text::Given(rego.into()));
        self
    }

    /// The policy's `.rego` file, read now and on each [`reload`](RegoPolicy::reload).
    pub fn policy_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy = Some(Text::File(path.into()));
        self
    }

    /// The data document (`data.*`), as a JSON object.
    pub fn data_json(mut self, json: impl Into<String>) -> Self {
        self.data = Some(Text::Given(json.into()));
        self
    }

    /// The data document's JSON file (`data.json`), read now and on each reload.
    pub fn data_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.data = Some(Text::File(path.into()));
        self
    }

    /// The rule whose value decides (default [`DEFAULT_QUERY`]): `data.<package>.<rule>`.
    pub fn query(mut self, query: impl Into<String>) -> Self {
        self.query = query.into();
        self
    }

    /// Reads and compiles the policy.
    ///
    /// # Errors
    ///
    /// No policy given, a file that cannot be read, Rego that does not compile, a query that
    /// names no rule of it, or data that is not a JSON object.
    pub fn build(self) -> Result<RegoPolicy, ConfigError> {
        let Some(policy) = self.policy else {
            return Err(invalid("no policy given".into()));
        };
        let source = Source {
            policy,
            data: self.data,
        };
        let query: Arc<str> = Arc::from(self.query);
        let compiled = compile(&source, &query)?;
        Ok(RegoPolicy {
            inner: Arc::new(Inner {
                compiled: ArcSwap::from_pointee(compiled),
                source,
                query,
            }),
        })
    }
}

fn invalid(reason: String) -> ConfigError {
    ConfigError::Invalid {
        what: "Rego policy",
        reason,
    }
}

fn read(text: &Text) -> Result<(String, String), ConfigError> {
    match text {
        Text::Given(text) => Ok(("policy.rego".to_owned(), text.clone())),
        Text::File(path) => std::fs::read_to_string(path)
            .map(|text| (path.display().to_string(), text))
            .map_err(|error| invalid(format!("{}: {error}", path.display()))),
    }
}

fn compile(source: &Source, query: &Arc<str>) -> Result<Compiled, ConfigError> {
    let (id, rego) = read(&source.policy)?;
    let data = match &source.data {
        None => Value::new_object(),
        Some(text) => {
            let (name, json) = read(text)?;
            let data =
                Value::from_json_str(&json).map_err(|error| invalid(format!("{name}: {error}")))?;
            if !matches!(data, Value::Object(_)) {
                return Err(invalid(format!("{name}: the data is not a JSON object")));
            }
            data
        }
    };
    let module = PolicyModule {
        id: id.as_str().into(),
        content: rego.as_str().into(),
    };
    // Compiling for the query checks that it names a rule of the policy.
    regorus::compile_policy_with_entrypoint(data.clone(), &[module], query.clone())
        .map_err(|error| invalid(format!("{error} (query {query})")))?;
    let mut interpreter = Interpreter::new();
    interpreter
        .add_policy(id, rego)
        .and_then(|_| interpreter.add_data(data))
        .map_err(|error| invalid(error.to_string()))?;
    Ok(Compiled {
        prototype: Mutex::new(interpreter),
    })
}

/// The input document of a request (see [`RegoPolicy`]), built as regorus values directly.
fn input(request: &DecisionRequest<'_>) -> Value {
    let uri = request.uri();
    let path = uri.path();
    let headers = headers(request);
    let principal = request.principal().map_or(Value::Null, |principal| {
        let roles: Vec<Value> = principal
            .roles()
            .iter()
            .map(|r| Value::from(r.as_str()))
            .collect();
        #[cfg_attr(not(feature = "jwt"), allow(unused_mut))]
        let mut fields = vec![
            ("id", Value::from(principal.id())),
            ("method", Value::from(principal.method().as_str())),
            ("roles", Value::from(roles)),
        ];
        #[cfg(feature = "jwt")]
        if let Some(claims) = request.extensions().get::<crate::claims::Claims>() {
            let claims = serde_json::Value::Object(claims.as_map().clone());
            fields.push(("claims", Value::from(claims)));
        }
        object(fields)
    });
    let mut request_fields = vec![
        ("method", Value::from(request.method().as_str())),
        ("path", Value::from(path)),
        ("query", optional(uri.query())),
        ("headers", headers.clone()),
    ];
    if is_grpc(request) {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (service, method) = (parts.next(), parts.next());
        let grpc = object(vec![
            ("service", optional(service)),
            ("method", optional(method)),
        ]);
        request_fields.push(("grpc", grpc));
    }
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(http::uri::Authority::as_str));
    let http = object(vec![
        ("method", Value::from(request.method().as_str())),
        (
            "path",
            Value::from(
                uri.path_and_query()
                    .map_or(path, http::uri::PathAndQuery::as_str),
            ),
        ),
        ("host", optional(host)),
        ("headers", headers),
    ]);
    let source_ip = request.source_ip().map(|ip| ip.to_string());
    let parsed_path: Vec<Value> = path
        .split('/')
        .skip(1)
        .map(|segment| Value::from(percent_decode_str(segment).decode_utf8_lossy().as_ref()))
        .collect();
    object(vec![
        ("principal", principal),
        ("request", object(request_fields)),
        (
            "source",
            object(vec![("ip", optional(source_ip.as_deref()))]),
        ),
        (
            "attributes",
            object(vec![("request", object(vec![("http", http)]))]),
        ),
        ("parsed_path", Value::from(parsed_path)),
        ("parsed_query", parsed_query(uri.query())),
    ])
}

fn object(fields: Vec<(&str, Value)>) -> Value {
    let map: BTreeMap<Value, Value> = fields
        .into_iter()
        .map(|(name, value)| (Value::from(name), value))
        .collect();
    Value::from(map)
}

fn optional(text: Option<&str>) -> Value {
    text.map_or(Value::Null, Value::from)
}

fn is_grpc(request: &DecisionRequest<'_>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/grpc"))
}

/// The headers as an object, credentials left out, several values joined by `, `.
fn headers(request: &DecisionRequest<'_>) -> Value {
    let mut out = BTreeMap::new();
    for name in request.headers().keys() {
        if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<&str> = request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        out.insert(Value::from(name.as_str()), Value::from(values.join(", ")));
    }
    Value::from(out)
}

/// Each parameter's values, in order, decoded as a form's (`+` is a space).
fn parsed_query(query: Option<&str>) -> Value {
    let mut out: BTreeMap<Value, Vec<Value>> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        out.entry(Value::from(name.as_ref()))
            .or_default()
            .push(Value::from(value.as_ref()));
    }
    Value::from(
        out.into_iter()
            .map(|(name, values)| (name, Value::from(values)))
            .collect::<BTreeMap<_, _>>(),
    )
}

#[cfg(test)]
mod tests {
    use http::{Extensions, HeaderMap, Method, Uri};

    use super::*;
    use crate::principal::{AuthMethod, Principal};

    fn policy(rego: &str) -> RegoPolicy {
        RegoPolicy::builder().policy(rego).build().unwrap()
    }

    /// Decides `GET uri` with these headers for `principal`.
    fn decide(
        policy: &RegoPolicy,
        uri: &str,
        headers: &[(&str, &str)],
        principal: Option<Principal>,
    ) -> EngineDecision {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let mut extensions = Extensions::new();
        if let Some(principal) = principal {
            extensions.insert(principal);
        }
        policy.decide(&DecisionRequest::new(&Method::GET, &uri, &map, &extensions))
    }

    fn reader() -> Option<Principal> {
        Some(Principal::new("gateway", AuthMethod::Hmac).with_roles(["reader"]))
    }

    #[test]
    fn booleans_and_objects_decide_anything_else_denies() {
        let rules = policy(
            r#"
            package zerotrust.authz
            default allow := false
            allow if "reader" in input.principal.roles
            "#,
        );
        assert_eq!(decide(&rules, "/m", &[], reader()), EngineDecision::Allow);
        let denied = decide(&rules, "/m", &[], None);
        assert_eq!(denied.as_str(), "authz.policy_denied");
        let object = policy(
            r#"
            package zerotrust.authz
            allow := {"allowed": false, "reason": sprintf("%s may not", [input.principal.id])}
            "#,
        );
        assert_eq!(
            decide(&object, "/m", &[], reader()),
            EngineDecision::Deny {
                code: "authz.policy_denied",
                reason: Some("gateway may not".into())
            }
        );
        let undefined = policy("package zerotrust.authz\nallow if input.nothing == 1");
        assert_eq!(
            decide(&undefined, "/m", &[], reader()).as_str(),
            "authz.policy_undefined"
        );
        let number = policy("package zerotrust.authz\nallow := 1");
        assert_eq!(
            decide(&number, "/m", &[], reader()).as_str(),
            "authz.policy_invalid"
        );
        let no_bool = policy("package zerotrust.authz\nallow := {\"allowed\": \"yes\"}");
        assert_eq!(
            decide(&no_bool, "/m", &[], reader()).as_str(),
            "authz.policy_invalid"
        );
        let failing = policy("package zerotrust.authz\nallow if 1 / 0 == 1");
        assert!(matches!(
            decide(&failing, "/m", &[], reader()).as_str(),
            "authz.policy_error" | "authz.policy_undefined"
        ));
    }

    #[test]
    fn policies_written_for_the_envoy_plugin_run_unchanged() {
        let envoy = policy(
            r#"
            package zerotrust.authz
            default allow := false
            http := input.attributes.request.http
            allow if {
                http.method == "GET"
                input.parsed_path == ["models", "a b"]
                input.parsed_query.tag == ["x", "y z"]
                http.path == "/models/a%20b?tag=x&tag=y+z"
                http.host == "registry.internal"
                http.headers["x-team"] == "ml, ops"
            }
            "#,
        );
        let headers = [
            ("host", "registry.internal"),
            ("x-team", "ml"),
            ("x-team", "ops"),
        ];
        let uri = "/models/a%20b?tag=x&tag=y+z";
        assert_eq!(decide(&envoy, uri, &headers, None), EngineDecision::Allow);
        let other = "/models/a%20b?tag=x";
        assert_ne!(decide(&envoy, other, &headers, None), EngineDecision::Allow);
    }

    /// A policy that hands its whole input back as the reason: no credential is in it.
    #[test]
    fn credentials_never_reach_the_input() {
        let dump = policy(
            "package zerotrust.authz\nallow := {\"allowed\": false, \"reason\": json.marshal(input)}",
        );
        let headers = [
            ("authorization", "Bearer secret-token"),
            ("cookie", "session=secret-cookie"),
            ("x-signature", "sha256=secret-mac"),
            ("signature", "sig1=:c2VjcmV0:"),
            ("signature-input", "sig1=();nonce=\"secret-nonce\""),
            ("x-service-id", "gateway"),
        ];
        let EngineDecision::Deny {
            reason: Some(input),
            ..
        } = decide(&dump, "/m?q=1", &headers, reader())
        else {
            panic!("the policy gives its input back");
        };
        assert!(input.contains("\"x-service-id\":\"gateway\""), "{input}");
        for secret in ["secret", "authorization", "cookie", "signature"] {
            assert!(!input.contains(secret), "{secret} in {input}");
        }
    }

    #[test]
    fn broken_policies_and_data_are_refused_and_reload_keeps_the_old_one() {
        assert!(RegoPolicy::builder().build().is_err());
        let wrong_query = RegoPolicy::builder()
            .policy("package zerotrust.authz\nallow := true")
            .query("data.elsewhere.allow")
            .build();
        assert!(wrong_query.is_err());
        assert!(
            RegoPolicy::builder()
                .policy("package x\nallow if {")
                .build()
                .is_err()
        );
        assert!(
            RegoPolicy::builder()
                .policy("package zerotrust.authz\nallow := true")
                .data_json("[1]")
                .build()
                .is_err()
        );
        let dir = std::env::temp_dir().join(format!("zt-rego-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (rego, data) = (dir.join("p.rego"), dir.join("data.json"));
        std::fs::write(
            &rego,
            "package zerotrust.authz\nallow if input.principal.id in data.callers",
        )
        .unwrap();
        std::fs::write(&data, r#"{"callers": ["gateway"]}"#).unwrap();
        let policy = RegoPolicy::builder()
            .policy_file(&rego)
            .data_file(&data)
            .build()
            .unwrap();
        assert_eq!(decide(&policy, "/", &[], reader()), EngineDecision::Allow);
        // New data: the caller is gone.
        std::fs::write(&data, r#"{"callers": ["batch"]}"#).unwrap();
        policy.reload().unwrap();
        assert_ne!(decide(&policy, "/", &[], reader()), EngineDecision::Allow);
        // A broken policy: refused, the one in force stays.
        std::fs::write(&rego, "package zerotrust.authz\nallow if {").unwrap();
        assert!(policy.reload().is_err());
        let batch = Some(Principal::new("batch", AuthMethod::Hmac));
        assert_eq!(decide(&policy, "/", &[], batch), EngineDecision::Allow);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
