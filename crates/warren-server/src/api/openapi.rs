//! The OpenAPI document, generated from the route table ([`endpoints`])
//! and the request types' derived schemas, served at `/api/schema/`.

use std::sync::LazyLock;

use axum::Json;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::accounts::{
    ApiKeyRequest, LoginRequest, MemberRequest, NameRequest, PasswordRequest, ProjectRequest,
    ProjectUpdateRequest, RoleRequest, SignupRequest,
};
use super::entities::{
    ActionBody, AnnotationBody, CohortBody, DashboardBody, ExperimentBody, FeatureFlagBody, InsightBody,
    StaticCohortPersons,
};
use super::flags::FlagsRequest;
use super::query::QueryRequest;
use super::{endpoints, Guard};

pub(super) async fn serve() -> Json<Value> {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(document);
    Json(DOCUMENT.clone())
}

fn add<T: ToSchema>(schemas: &mut Map<String, Value>) {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    schemas.insert(T::name().into_owned(), serde_json::to_value(T::schema()).unwrap_or_default());
}

fn components() -> Map<String, Value> {
    let mut schemas = Map::new();
    add::<SignupRequest>(&mut schemas);
    add::<LoginRequest>(&mut schemas);
    add::<NameRequest>(&mut schemas);
    add::<PasswordRequest>(&mut schemas);
    add::<MemberRequest>(&mut schemas);
    add::<RoleRequest>(&mut schemas);
    add::<ProjectRequest>(&mut schemas);
    add::<ProjectUpdateRequest>(&mut schemas);
    add::<ApiKeyRequest>(&mut schemas);
    add::<QueryRequest>(&mut schemas);
    add::<StaticCohortPersons>(&mut schemas);
    add::<FlagsRequest>(&mut schemas);
    add::<ActionBody>(&mut schemas);
    add::<CohortBody>(&mut schemas);
    add::<InsightBody>(&mut schemas);
    add::<DashboardBody>(&mut schemas);
    add::<AnnotationBody>(&mut schemas);
    add::<FeatureFlagBody>(&mut schemas);
    add::<ExperimentBody>(&mut schemas);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["type", "code", "detail"],
            "properties": {"type": {"type": "string"}, "code": {"type": "string"}, "detail": {"type": "string"}},
        }),
    );
    schemas
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn document() -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints() {
        let parameters: Vec<Value> = endpoint
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}}))
            .chain(endpoint.path.ends_with("local_evaluation").then(|| json!({"name": "token", "in": "query", "required": false, "schema": {"type": "string"}})))
            .chain((endpoint.path == "/flags/definitions").then(|| json!({"name": "token", "in": "query", "required": true, "schema": {"type": "string"}})))
            .collect();
        let success = match endpoint.method.as_str() {
            "POST" if endpoint.action.ends_with(".create") || endpoint.action == "signup" => "201",
            "DELETE" => "204",
            _ => "200",
        };
        let mut responses = Map::new();
        responses.insert(success.into(), json!({"description": "Done"}));
        responses.insert("400".into(), error("The request is invalid"));
        responses.insert("404".into(), error("No such resource (or one of another organization)"));
        let security = match endpoint.guard {
            Guard::Public | Guard::ProjectToken => json!([]),
            Guard::Caller => {
                responses.insert("401".into(), error("No valid credentials"));
                responses.insert("403".into(), error("The credentials lack a scope or role"));
                json!([{"personalApiKey": []}, {"session": []}])
            }
            Guard::Session => {
                responses.insert("401".into(), error("No valid credentials"));
                responses.insert("403".into(), error("Needs a signed-in user"));
                json!([{"session": []}])
            }
        };
        if endpoint.guard == Guard::ProjectToken {
            responses.insert("401".into(), error("Unknown project token"));
        }
        if endpoint.action == "feature_flag.definitions" {
            responses
                .insert("304".into(), json!({"description": "Unchanged since the `If-None-Match` version"}));
        }
        if endpoint.action == "login" {
            responses.insert("401".into(), error("Invalid email or password"));
            responses.insert("429".into(), error("Too many attempts"));
        }
        if endpoint.writes {
            responses.insert("409".into(), error("A unique key is taken"));
        }
        let mut operation = json!({
            "operationId": format!("{}{}", endpoint.method.as_str().to_lowercase(), endpoint.path.replace(['/', '{', '}', '@'], "_")),
            "summary": endpoint.summary,
            "tags": [endpoint.action.split('.').next().unwrap_or_default()],
            "parameters": parameters,
            "responses": responses,
            "security": security,
        });
        if let Some(resource) = endpoint.resource {
            let level = if endpoint.writes { "write" } else { "read" };
            operation["x-warren-scope"] = Value::String(format!("{resource}:{level}"));
        }
        if let Some(component) = endpoint.body {
            operation["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{component}")}}},
            });
        }
        let path = if endpoint.path.starts_with("/api/") {
            format!("{}/", endpoint.path)
        } else {
            endpoint.path.clone()
        };
        let item = paths.entry(path).or_insert_with(|| json!({}));
        item[endpoint.method.as_str().to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Warren API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Warren's REST API: accounts, projects, product entities, queries and feature flags.",
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {
                "personalApiKey": {"type": "http", "scheme": "bearer", "description": "A personal API key, phx_…"},
                "session": {"type": "apiKey", "in": "cookie", "name": super::auth::SESSION_COOKIE},
            },
        },
    })
}
