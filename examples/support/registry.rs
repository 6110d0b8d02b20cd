//! A small model registry over gRPC, written out by hand instead of generated, so that the
//! example builds without `protoc`. It is what `tonic-build` would make of:
//!
//! ```proto
//! syntax = "proto3";
//! package registry;
//!
//! service ModelRegistry {
//!   rpc GetModel(GetModelRequest) returns (Model);               // needs models:read
//!   rpc CreateModel(CreateModelRequest) returns (Model);         // needs models:write
//!   rpc WatchModels(WatchModelsRequest) returns (stream Model);  // needs models:read
//! }
//! message GetModelRequest { string id = 1; }
//! message CreateModelRequest { string name = 1; }
//! message WatchModelsRequest {}
//! message Model { string id = 1; string name = 2; string owner = 3; }
//! ```
#![allow(dead_code)] // the example and the tests each use part of it

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, tokio_stream};
use tonic::server::{Grpc, NamedService, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tower_zerotrust::Principal;

pub const GET_MODEL: &str = "/registry.ModelRegistry/GetModel";
pub const CREATE_MODEL: &str = "/registry.ModelRegistry/CreateModel";
pub const WATCH_MODELS: &str = "/registry.ModelRegistry/WatchModels";

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetModelRequest {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateModelRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WatchModelsRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Model {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub owner: String,
}

/// The server: models in memory. The caller is the `Principal` the layers proved.
#[derive(Clone, Default)]
pub struct ModelRegistry {
    models: Arc<Mutex<BTreeMap<u64, Model>>>,
}

impl NamedService for ModelRegistry {
    const NAME: &'static str = "registry.ModelRegistry";
}

fn caller<T>(request: &Request<T>) -> Result<Principal, Status> {
    // The layers refuse anonymous calls first; this is the handler's own check.
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no principal"))
}

struct Get(ModelRegistry);

impl UnaryService<GetModelRequest> for Get {
    type Response = Model;
    type Future = BoxFuture<Response<Model>, Status>;

    fn call(&mut self, request: Request<GetModelRequest>) -> Self::Future {
        let models = self.0.models.clone();
        Box::pin(async move {
            caller(&request)?;
            let id: u64 = request
                .get_ref()
                .id
                .parse()
                .map_err(|_| Status::invalid_argument("id is a number"))?;
            let model = models.lock().unwrap().get(&id).cloned();
            model
                .map(Response::new)
                .ok_or_else(|| Status::not_found("no such model"))
        })
    }
}

struct Create(ModelRegistry);

impl UnaryService<CreateModelRequest> for Create {
    type Response = Model;
    type Future = BoxFuture<Response<Model>, Status>;

    fn call(&mut self, request: Request<CreateModelRequest>) -> Self::Future {
        let models = self.0.models.clone();
        Box::pin(async move {
            let owner = caller(&request)?.id().to_owned();
            let mut models = models.lock().unwrap();
            let id = models.keys().next_back().map_or(1, |last| last + 1);
            let model = Model {
                id: id.to_string(),
                name: request.into_inner().name,
                owner,
            };
            models.insert(id, model.clone());
            Ok(Response::new(model))
        })
    }
}

struct Watch(ModelRegistry);

type ModelStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<Model, Status>> + Send>>;

impl ServerStreamingService<WatchModelsRequest> for Watch {
    type Response = Model;
    type ResponseStream = ModelStream;
    type Future = BoxFuture<Response<ModelStream>, Status>;

    fn call(&mut self, request: Request<WatchModelsRequest>) -> Self::Future {
        let models = self.0.models.clone();
        Box::pin(async move {
            caller(&request)?;
            let snapshot: Vec<_> = models.lock().unwrap().values().cloned().map(Ok).collect();
            Ok(Response::new(
                Box::pin(tokio_stream::iter(snapshot)) as ModelStream
            ))
        })
    }
}

impl tower::Service<http::Request<Body>> for ModelRegistry {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            Ok(match request.uri().path() {
                GET_MODEL => {
                    let mut grpc = Grpc::new(ProstCodec::<Model, GetModelRequest>::default());
                    grpc.unary(Get(this), request).await
                }
                CREATE_MODEL => {
                    let mut grpc = Grpc::new(ProstCodec::<Model, CreateModelRequest>::default());
                    grpc.unary(Create(this), request).await
                }
                WATCH_MODELS => {
                    let mut grpc = Grpc::new(ProstCodec::<Model, WatchModelsRequest>::default());
                    grpc.server_streaming(Watch(this), request).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

/// The client side: one function per method, over any gRPC transport (a `Channel`, or a
/// `Channel` wrapped in the signing or bearer layers).
pub mod client {
    use super::*;

    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    async fn ready<S>(channel: S) -> Result<tonic::client::Grpc<S>, Status>
    where
        S: tonic::client::GrpcService<Body>,
        S::Error: Into<BoxError>,
    {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(e.into().to_string()))?;
        Ok(grpc)
    }

    /// Names the method in the request, as generated clients do (client interceptors that sign
    /// read it).
    fn named<T>(mut request: Request<T>, method: &'static str) -> Request<T> {
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new("registry.ModelRegistry", method));
        request
    }

    pub async fn get_model<S>(channel: S, id: &str) -> Result<Model, Status>
    where
        S: tonic::client::GrpcService<Body>,
        S::Error: Into<BoxError>,
        S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        <S::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
    {
        let request = named(
            Request::new(GetModelRequest { id: id.to_owned() }),
            "GetModel",
        );
        let codec = ProstCodec::<GetModelRequest, Model>::default();
        let path = PathAndQuery::from_static(GET_MODEL);
        let response = ready(channel).await?.unary(request, path, codec).await?;
        Ok(response.into_inner())
    }

    pub async fn create_model<S>(channel: S, name: &str) -> Result<Model, Status>
    where
        S: tonic::client::GrpcService<Body>,
        S::Error: Into<BoxError>,
        S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        <S::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
    {
        let request = named(
            Request::new(CreateModelRequest {
                name: name.to_owned(),
            }),
            "CreateModel",
        );
        let codec = ProstCodec::<CreateModelRequest, Model>::default();
        let path = PathAndQuery::from_static(CREATE_MODEL);
        let response = ready(channel).await?.unary(request, path, codec).await?;
        Ok(response.into_inner())
    }

    pub async fn watch_models<S>(channel: S) -> Result<Vec<Model>, Status>
    where
        S: tonic::client::GrpcService<Body>,
        S::Error: Into<BoxError>,
        S::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        <S::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
    {
        let request = named(Request::new(WatchModelsRequest {}), "WatchModels");
        let codec = ProstCodec::<WatchModelsRequest, Model>::default();
        let path = PathAndQuery::from_static(WATCH_MODELS);
        let mut stream: Streaming<Model> = ready(channel)
            .await?
            .server_streaming(request, path, codec)
            .await?
            .into_inner();
        let mut models = Vec::new();
        while let Some(model) = stream.message().await? {
            models.push(model);
        }
        Ok(models)
    }
}

/// The registry behind every layer of the crate, as a service would run it:
/// audit ▸ mTLS principal / HMAC / bearer token (any one) ▸ rate limit ▸ authorize per method.
pub mod secured {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use tower::ServiceBuilder;
    use tower_zerotrust::audit::{AuditLayer, AuditSink};
    use tower_zerotrust::authz::{AuthorizeConfig, AuthorizeLayer, Policy, Require};
    use tower_zerotrust::hmac::{HmacConfig, VerifyHmacLayer};
    use tower_zerotrust::jwt::{Algorithm, JwtConfig, JwtKey, RequireJwtLayer};
    use tower_zerotrust::mtls::{MtlsPrincipalConfig, MtlsPrincipalLayer, serve_tls};
    use tower_zerotrust::rate_limit::{RateLimitConfig, RateLimitLayer};

    use super::{CREATE_MODEL, GET_MODEL, ModelRegistry, WATCH_MODELS};

    pub const ISSUER: &str = "intellirouter";
    pub const AUDIENCE: &str = "intellirouter-services";

    /// Who may call: the example roles, with roles for services that prove themselves by
    /// certificate or signature (assigned by name).
    pub fn policy() -> Policy {
        Policy::builder()
            .role("developer", ["models:read", "models:write"])
            .role("viewer", ["models:read"])
            .assign("ci-pipeline", ["developer"])
            .assign("dashboard", ["viewer"])
            .assign("gateway", ["viewer"])
            .assign("batch-job", ["viewer"])
            .build()
            .expect("a valid policy")
    }

    /// Serves the secured registry over TLS on `listener` (client certificates optional:
    /// callers may prove themselves by certificate, HMAC signature or bearer token).
    pub fn spawn(
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        hmac_secret: &str,
        jwt_secret: &str,
        limits: RateLimitConfig,
        audit: impl AuditSink + Clone,
    ) -> Result<SocketAddr, tower_zerotrust::BoxError> {
        let addr = listener.local_addr()?;
        let authorize = AuthorizeConfig::builder(policy())
            .grpc(GET_MODEL, Require::permission("models:read"))
            .grpc(WATCH_MODELS, Require::permission("models:read"))
            .grpc(CREATE_MODEL, Require::permission("models:write"))
            .build()?;
        let hmac = HmacConfig::builder()
            .secret(hmac_secret)
            .allow_any_caller()
            .optional()
            .build()?;
        let jwt = JwtConfig::builder()
            .key(JwtKey::hmac(Algorithm::HS256, jwt_secret)?)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .optional()
            .build()?;
        let mtls = MtlsPrincipalConfig::builder().optional().build()?;
        let service = ServiceBuilder::new()
            .layer(AuditLayer::new(audit))
            .layer(MtlsPrincipalLayer::new(mtls))
            .layer(VerifyHmacLayer::new(hmac))
            .layer(RequireJwtLayer::new(jwt))
            .layer(RateLimitLayer::new(limits))
            .layer(AuthorizeLayer::new(authorize))
            .service(tonic::service::Routes::new(ModelRegistry::default()));
        tokio::spawn(serve_tls(listener, tls, service, std::future::pending()));
        Ok(addr)
    }

    /// A tonic `Channel` to `addr` over TLS with `config` (which may present a client
    /// certificate).
    pub async fn channel(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let connector = tower::service_fn(move |_: http::Uri| {
            let config = config.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect("localhost".try_into().expect("a DNS name"), tcp)
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        tonic::transport::Endpoint::from_static("http://localhost")
            .connect_with_connector(connector)
            .await
    }
}
