//! A compose file with the scale-out stores: PostgreSQL as the meta store
//! and an S3 server (MinIO) for the events table and recordings, the
//! writer, and a query process. Passwords come from the `.env` file next
//! to it (`env.example` lists them); compose refuses to start without
//! them rather than running with a default.

use serde_json::{json, Value};

use super::{yaml, Artefact, Size};

const S3_ENDPOINT: &str = "http://minio:9000";

/// `compose.yaml` and `env.example`.
pub fn compose(image: &str, size: Size) -> Vec<Artefact> {
    let resources = size.resources();
    let memory = format!("{}m", resources.memory_mib);
    let warren = |role: &str, port: &str| {
        json!({
            "image": image,
            "command": ["serve", "--role", role, "--listen", "0.0.0.0:8000", "--data-dir", "/var/lib/warren"],
            "environment": warren_environment(resources.query_memory_mb),
            "ports": [format!("{port}:8000")],
            "volumes": [format!("warren-{role}:/var/lib/warren")],
            "depends_on": {
                "postgres": {"condition": "service_healthy"},
                "buckets": {"condition": "service_completed_successfully"},
            },
            "restart": "unless-stopped",
            // SIGTERM drains requests and ingest's batch first.
            "stop_grace_period": "90s",
            "mem_limit": memory,
            "ulimits": {"nofile": {"soft": 65536, "hard": 65536}},
        })
    };
    let file = json!({
        "name": "warren",
        "services": {
            "postgres": {
                "image": "postgres:16",
                "environment": {
                    "POSTGRES_USER": "warren",
                    "POSTGRES_DB": "warren",
                    "POSTGRES_PASSWORD": "${WARREN_POSTGRES_PASSWORD:?set it in .env}",
                },
                "volumes": ["postgres:/var/lib/postgresql/data"],
                "healthcheck": {
                    "test": ["CMD", "pg_isready", "-U", "warren", "-d", "warren"],
                    "interval": "5s", "timeout": "5s", "retries": 20,
                },
                "restart": "unless-stopped",
            },
            "minio": {
                "image": "minio/minio",
                "command": ["server", "/data"],
                "environment": {
                    "MINIO_ROOT_USER": "${WARREN_S3_ACCESS_KEY:?set it in .env}",
                    "MINIO_ROOT_PASSWORD": "${WARREN_S3_SECRET_KEY:?set it in .env}",
                },
                "volumes": ["s3:/data"],
                "healthcheck": {
                    "test": ["CMD", "mc", "ready", "local"],
                    "interval": "5s", "timeout": "5s", "retries": 20,
                },
                "restart": "unless-stopped",
            },
            "buckets": {
                "image": "minio/mc",
                "depends_on": {"minio": {"condition": "service_healthy"}},
                "entrypoint": ["/bin/sh", "-c"],
                "command": [
                    "mc alias set s3 http://minio:9000 \"$$WARREN_S3_ACCESS_KEY\" \"$$WARREN_S3_SECRET_KEY\" && mc mb --ignore-existing s3/warren"
                ],
                "environment": {
                    "WARREN_S3_ACCESS_KEY": "${WARREN_S3_ACCESS_KEY}",
                    "WARREN_S3_SECRET_KEY": "${WARREN_S3_SECRET_KEY}",
                },
            },
            // Capture and ingest share the embedded event log, so one
            // process holds both; queries scale apart.
            "warren": warren("all", "8000"),
            "warren-query": warren("query", "8001"),
        },
        "volumes": {"postgres": {}, "s3": {}, "warren-all": {}, "warren-query": {}},
    });
    let env = "# Copy to .env next to compose.yaml and choose every value. The\n\
               # PostgreSQL password goes into a URL: keep to letters and digits.\n\
               WARREN_POSTGRES_PASSWORD=\n\
               WARREN_S3_ACCESS_KEY=\n\
               WARREN_S3_SECRET_KEY=\n";
    vec![Artefact::new("compose.yaml", yaml(&file)), Artefact::new("env.example", env)]
}

fn warren_environment(query_memory_mb: u64) -> Value {
    let mut env = json!({
        "WARREN_META_URL": "postgres://warren:${WARREN_POSTGRES_PASSWORD}@postgres:5432/warren",
        "WARREN_EVENT_STORE__URL": "s3://warren/events",
        "WARREN_RECORDINGS__URL": "s3://warren/recordings",
        "WARREN_QUERY__MEMORY_LIMIT_MB": query_memory_mb.to_string(),
        "WARREN_LOG_FORMAT": "json",
    });
    for store in ["EVENT_STORE", "RECORDINGS"] {
        for (key, value) in [
            ("AWS_ENDPOINT", S3_ENDPOINT),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "${WARREN_S3_ACCESS_KEY}"),
            ("AWS_SECRET_ACCESS_KEY", "${WARREN_S3_SECRET_KEY}"),
        ] {
            env[format!("WARREN_{store}__STORAGE_OPTIONS__{key}")] = json!(value);
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_asked_for_never_defaulted() {
        let files = compose("warren:1", Size::Small);
        let text = &files[0].text;
        let parsed: Value = yaml_serde::from_str(text).expect("YAML");
        assert_eq!(parsed["services"]["warren"]["depends_on"]["postgres"]["condition"], "service_healthy");
        assert!(text.contains("${WARREN_POSTGRES_PASSWORD:?set it in .env}"));
        assert!(!text.to_lowercase().contains("clickhouse/"), "no ClickHouse server inside");
    }
}
