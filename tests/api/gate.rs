//! Each operation declares its gate where it declares its path: a route
//! added anywhere, with any path, is authenticated and limited by what it
//! declares — no list of path strings to keep in step.

use std::sync::Arc;

use payorch::{
    http::{
        auth::{Authenticator, ClientAuth},
        error::render_any_error,
        gate::{Gatekeeper, limit_verify},
    },
    ratelimit::RateLimiter,
    store,
};
use poem::{EndpointExt, Route, Server, listener::TcpAcceptor};
use poem_openapi::{OpenApi, OpenApiService, payload::PlainText};

use crate::helpers::{TestDb, config_from, test_env};

struct NewApi;

#[OpenApi]
impl NewApi {
    /// A route payorch does not have, on a path no gate code names.
    #[oai(
        path = "/v9/brand-new/:thing",
        method = "post",
        transform = "limit_verify"
    )]
    async fn brand_new(
        &self,
        auth: ClientAuth,
        thing: poem_openapi::param::Path<String>,
    ) -> PlainText<String> {
        PlainText(format!("{} for {}", thing.0, auth.0.name))
    }
}

#[tokio::test]
async fn a_new_route_is_authenticated_and_limited_by_its_own_declaration() {
    crate::helpers::init_logs();
    let db = TestDb::sqlite();
    let mut env = test_env(&db);
    env.insert(
        "PAYORCH_RATE_LIMITS".into(),
        "initialize=100/60,verify=2/60,unauthenticated=100/60".into(),
    );
    let cfg = config_from(&env);
    let conn = db.connect().await;
    store::migrate(&conn, &cfg.database_url).await.unwrap();
    let (_, key) = store::api_clients::create(&conn, "newcomer").await.unwrap();
    let gatekeeper = Gatekeeper::new(
        Authenticator::new(conn.clone(), cfg.auth_cache_ttl),
        Arc::new(RateLimiter::new(cfg.rate_limits.clone(), None)),
        Vec::new(),
    );
    let app = Route::new()
        .nest("/", OpenApiService::new(NewApi, "t", "1"))
        .data(gatekeeper)
        .catch_all_error(render_any_error);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v9/brand-new/x", listener.local_addr().unwrap());
    let server = tokio::spawn(
        Server::new_with_acceptor(TcpAcceptor::from_tokio(listener).unwrap()).run(app),
    );
    let http = reqwest::Client::new();

    let anonymous = http.post(&url).send().await.unwrap();
    crate::helpers::assert_problem(anonymous, 401, "unauthorized").await;

    for remaining in ["1", "0"] {
        let allowed = http.post(&url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(allowed.status(), 200);
        assert_eq!(allowed.headers()["x-ratelimit-limit"], "2");
        assert_eq!(allowed.headers()["x-ratelimit-remaining"], remaining);
        assert_eq!(allowed.headers()["ratelimit-policy"], "\"verify\";q=2;w=60");
        assert_eq!(allowed.text().await.unwrap(), "x for newcomer");
    }
    let refused = http.post(&url).bearer_auth(&key).send().await.unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    crate::helpers::assert_problem(refused, 429, "rate_limited").await;
    server.abort();
}
