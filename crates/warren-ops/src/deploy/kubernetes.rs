//! Kubernetes manifests, plain YAML rather than a Helm chart: every choice
//! a chart would template (cloud, shape, size) is made here, in tested
//! code, and what comes out is the exact set of objects that will exist —
//! reviewable, diffable, validated offline, and applied with `kubectl`,
//! kustomize or a GitOps tool without a templating engine in between.
//! The files are numbered in the order they are applied: the namespace and
//! configuration, then the schema migration Job (which finishes before the
//! rollout), then the workloads.

use serde_json::{json, Value};

use super::{config_file, documents, Artefact, ExternalStores, Resources, Shape, Size};

/// The clouds whose levers the manifests pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
    DigitalOcean,
    Ibm,
    /// Bare metal: the cluster's default storage class and a
    /// LoadBalancer answered by MetalLB or similar.
    Metal,
}

impl Cloud {
    /// The CSI provisioner and parameters of an SSD class made for Warren,
    /// or none to use the cluster's default class.
    fn storage_class(self) -> Option<(&'static str, Value)> {
        match self {
            Cloud::Aws => Some(("ebs.csi.aws.com", json!({"type": "gp3", "fsType": "ext4"}))),
            Cloud::Gcp => Some(("pd.csi.storage.gke.io", json!({"type": "pd-balanced"}))),
            Cloud::Azure => Some(("disk.csi.azure.com", json!({"skuName": "Premium_LRS"}))),
            Cloud::DigitalOcean => Some(("dobs.csi.digitalocean.com", json!({}))),
            Cloud::Ibm => Some(("vpc.block.csi.ibm.io", json!({"profile": "10iops-tier"}))),
            Cloud::Metal => None,
        }
    }

    /// Annotations of a public load balancer: the type of balancer, and
    /// its health check on `/_readiness` where the cloud takes one.
    fn load_balancer_annotations(self, internal: bool) -> Value {
        match (self, internal) {
            (Cloud::Aws, _) => json!({
                "service.beta.kubernetes.io/aws-load-balancer-type": "external",
                "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
                "service.beta.kubernetes.io/aws-load-balancer-scheme": if internal { "internal" } else { "internet-facing" },
                "service.beta.kubernetes.io/aws-load-balancer-healthcheck-path": "/_readiness",
                "service.beta.kubernetes.io/aws-load-balancer-healthcheck-protocol": "http",
            }),
            (Cloud::Gcp, true) => json!({"networking.gke.io/load-balancer-type": "Internal"}),
            (Cloud::Gcp, false) => json!({}),
            (Cloud::Azure, _) => json!({
                "service.beta.kubernetes.io/azure-load-balancer-internal": if internal { "true" } else { "false" },
                "service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path": "/_readiness",
            }),
            (Cloud::DigitalOcean, _) => json!({
                "service.beta.kubernetes.io/do-loadbalancer-healthcheck-path": "/_readiness",
                "service.beta.kubernetes.io/do-loadbalancer-healthcheck-protocol": "http",
            }),
            (Cloud::Ibm, _) => json!({
                "service.kubernetes.io/ibm-load-balancer-cloud-provider-ip-type": if internal { "private" } else { "public" },
            }),
            (Cloud::Metal, _) => json!({}),
        }
    }
}

/// What to write.
#[derive(Debug, Clone)]
pub struct KubernetesPlan {
    pub cloud: Cloud,
    pub shape: Shape,
    pub size: Size,
    pub namespace: String,
    pub image: String,
    /// Query processes to start with, for the `roles` shape; the
    /// autoscaler goes from here to four times as many.
    pub query_replicas: u32,
    /// Load balancers on the private network only.
    pub internal: bool,
    pub stores: ExternalStores,
}

const SECRET: &str = "warren-secrets";
const CONFIG: &str = "warren-config";
const DATA_DIR: &str = "/var/lib/warren";

/// The manifests for `plan`.
pub fn kubernetes(plan: &KubernetesPlan) -> Vec<Artefact> {
    let resources = plan.size.resources();
    let mut base = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.namespace}}),
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "warren", "namespace": plan.namespace},
            "automountServiceAccountToken": false,
        }),
    ];
    // The writer holds the embedded log, so capture and ingest share it;
    // in the roles shape the dashboard and API are served by the query
    // fleet, but the writer still answers them for the operator.
    base.push(config_map(plan, CONFIG, "all", resources));
    if plan.shape == Shape::Roles {
        base.push(config_map(plan, "warren-query-config", "query", resources));
    }
    if let Some((provisioner, parameters)) = plan.cloud.storage_class() {
        base.push(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "warren-ssd"},
            "provisioner": provisioner,
            "parameters": parameters,
            // Bind where the pod lands, so the volume is in its zone.
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": true,
            "reclaimPolicy": "Retain",
        }));
    }
    let mut files = vec![Artefact::new("00-base.yaml", documents(&base))];
    if plan.shape == Shape::Roles {
        files.push(Artefact::new("10-migrate-job.yaml", documents(&[migrate_job(plan)])));
    }
    // In the roles shape the SDKs send to `warren-capture` and people
    // use `warren`, the query fleet.
    let writer_service = match plan.shape {
        Shape::AllInOne => "warren",
        Shape::Roles => "warren-capture",
    };
    let writer = vec![writer_statefulset(plan, resources), service(plan, writer_service, "writer")];
    files.push(Artefact::new("20-writer.yaml", documents(&writer)));
    if plan.shape == Shape::Roles {
        let query = vec![
            query_deployment(plan, resources),
            service(plan, "warren", "query"),
            json!({
                "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "warren-query", "namespace": plan.namespace},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "warren-query"},
                    "minReplicas": plan.query_replicas.max(1),
                    "maxReplicas": plan.query_replicas.max(1) * 4,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
                },
            }),
            json!({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": "warren-query", "namespace": plan.namespace},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": labels("query")}},
            }),
        ];
        files.push(Artefact::new("30-query.yaml", documents(&query)));
    }
    files
}

fn labels(component: &str) -> Value {
    json!({"app.kubernetes.io/name": "warren", "app.kubernetes.io/component": component})
}

fn config_map(plan: &KubernetesPlan, name: &str, role: &str, resources: Resources) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": plan.namespace},
        "data": {"warren.toml": config_file(DATA_DIR, role, resources, &plan.stores, Some("0.0.0.0:9090"))},
    })
}

/// The container every workload runs: probes on `/_liveness` and
/// `/_readiness`, secrets from the Secret, a read-only root filesystem.
fn container(plan: &KubernetesPlan, args: &[&str], resources: Resources, config: &str) -> Value {
    let memory = format!("{}Mi", resources.memory_mib);
    json!({
        "name": "warren",
        "image": plan.image,
        "args": args,
        "env": [{"name": "WARREN_CONFIG", "value": "/etc/warren/warren.toml"}],
        // Optional so the all-in-one shape starts without one; the roles
        // shape's settings say which keys it needs (docs/deploy/).
        "envFrom": [{"secretRef": {"name": SECRET, "optional": plan.shape == Shape::AllInOne}}],
        "ports": [
            {"name": "http", "containerPort": 8000},
            {"name": "metrics", "containerPort": 9090},
        ],
        "resources": {
            "requests": {"cpu": resources.cpus.to_string(), "memory": memory},
            "limits": {"memory": memory},
        },
        // A start after a crash recovers the log's tail first: give it time.
        "startupProbe": {"httpGet": {"path": "/_liveness", "port": "http"}, "periodSeconds": 5, "failureThreshold": 120},
        "livenessProbe": {"httpGet": {"path": "/_liveness", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
        "readinessProbe": {"httpGet": {"path": "/_readiness", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": config, "mountPath": "/etc/warren", "readOnly": true},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]},
        },
    })
}

fn pod_spec(container: Value, config: &str, extra_volumes: Vec<Value>) -> Value {
    let mut volumes =
        vec![json!({"name": config, "configMap": {"name": config}}), json!({"name": "tmp", "emptyDir": {}})];
    volumes.extend(extra_volumes);
    json!({
        "serviceAccountName": "warren",
        // SIGTERM drains requests and ingest's batch; give it the time.
        "terminationGracePeriodSeconds": 60,
        "securityContext": {
            "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": [{
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "warren"}},
        }],
    })
}

/// The process holding the embedded event log: one replica on its own
/// volume (the log takes one writer), restarted in place by its
/// StatefulSet and never doubled during a rollout.
fn writer_statefulset(plan: &KubernetesPlan, resources: Resources) -> Value {
    let container = container(plan, &["serve"], resources, CONFIG);
    let mut claim = json!({
        "metadata": {"name": "data"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": format!("{}Gi", resources.volume_gib)}},
        },
    });
    if plan.cloud.storage_class().is_some() {
        claim["spec"]["storageClassName"] = json!("warren-ssd");
    }
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "warren", "namespace": plan.namespace, "labels": labels("writer")},
        "spec": {
            "serviceName": "warren",
            "replicas": 1,
            "selector": {"matchLabels": labels("writer")},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels("writer")},
                "spec": pod_spec(container, CONFIG, Vec::new()),
            },
            "volumeClaimTemplates": [claim],
        },
    })
}

/// Query processes: stateless over the shared stores, so a Deployment
/// that the autoscaler sizes. Their data dir is scratch space.
fn query_deployment(plan: &KubernetesPlan, resources: Resources) -> Value {
    let config = "warren-query-config";
    let mut container = container(plan, &["serve"], resources, config);
    // A query process's own health events would go to a log no ingest
    // reads; the writer's self-monitoring covers the deployment.
    if let Some(env) = container["env"].as_array_mut() {
        env.push(json!({"name": "WARREN_SELF_MONITORING__ENABLED", "value": "false"}));
    }
    let scratch = json!({"name": "data", "emptyDir": {"sizeLimit": "10Gi"}});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "warren-query", "namespace": plan.namespace, "labels": labels("query")},
        "spec": {
            "replicas": plan.query_replicas.max(1),
            "selector": {"matchLabels": labels("query")},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels("query")},
                "spec": pod_spec(container, config, vec![scratch]),
            },
        },
    })
}

/// `warren migrate up` as a Job, applied and waited for before the
/// workloads roll out: the ClickHouse cluster's migrations can run for
/// hours and resume where they stopped if the Job's pod is replaced.
fn migrate_job(plan: &KubernetesPlan) -> Value {
    let mut container = container(plan, &["migrate", "up"], Size::Small.resources(), CONFIG);
    if let Some(object) = container.as_object_mut() {
        for serving_only in ["startupProbe", "livenessProbe", "readinessProbe", "ports"] {
            object.remove(serving_only);
        }
    }
    let scratch = json!({"name": "data", "emptyDir": {}});
    let mut spec = pod_spec(container, CONFIG, vec![scratch]);
    spec["restartPolicy"] = json!("OnFailure");
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        // Named by version: a Job's template cannot change, so each
        // release's migration is a Job of its own.
        "metadata": {"name": migrate_job_name(), "namespace": plan.namespace, "labels": labels("migrate")},
        "spec": {
            "backoffLimit": 20,
            "template": {"metadata": {"labels": labels("migrate")}, "spec": spec},
        },
    })
}

/// A load-balanced Service in front of one component.
/// `warren-migrate-0-1-0`: the version, as a name may hold it.
fn migrate_job_name() -> String {
    let version: String = env!("CARGO_PKG_VERSION")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    format!("warren-migrate-{version}")
}

fn service(plan: &KubernetesPlan, name: &str, component: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": plan.namespace,
            "annotations": plan.cloud.load_balancer_annotations(plan.internal),
        },
        "spec": {
            "type": "LoadBalancer",
            "selector": labels(component),
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(cloud: Cloud, shape: Shape) -> KubernetesPlan {
        KubernetesPlan {
            cloud,
            shape,
            size: Size::Small,
            namespace: "analytics".into(),
            image: "registry.example/warren:1".into(),
            query_replicas: 2,
            internal: false,
            stores: ExternalStores::default(),
        }
    }

    fn objects(files: &[Artefact]) -> Vec<Value> {
        files
            .iter()
            .flat_map(|file| {
                file.text.split("---\n").map(|doc| yaml_serde::from_str::<Value>(doc).expect("YAML"))
            })
            .collect()
    }

    #[test]
    fn all_in_one_is_one_writer_on_the_clouds_disk() {
        let files = kubernetes(&plan(Cloud::Aws, Shape::AllInOne));
        let objects = objects(&files);
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(
            kinds,
            ["Namespace", "ServiceAccount", "ConfigMap", "StorageClass", "StatefulSet", "Service"]
        );
        let set = &objects[4];
        assert_eq!(set["spec"]["replicas"], 1);
        assert_eq!(set["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"], "warren-ssd");
        let container = &set["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/_readiness");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/_liveness");
        assert_eq!(objects[3]["provisioner"], "ebs.csi.aws.com");
    }

    #[test]
    fn roles_migrate_before_the_query_fleet_scales_and_never_deploy_clickhouse() {
        let all = [Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::DigitalOcean, Cloud::Ibm, Cloud::Metal];
        for cloud in all {
            let files = kubernetes(&plan(cloud, Shape::Roles));
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(names, ["00-base.yaml", "10-migrate-job.yaml", "20-writer.yaml", "30-query.yaml"]);
            let objects = objects(&files);
            let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
            for kind in ["Job", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Deployment"] {
                assert!(kinds.contains(&kind), "{cloud:?} lacks a {kind}");
            }
            let all = files.iter().map(|f| f.text.as_str()).collect::<String>();
            assert!(
                !all.to_lowercase().contains("image: clickhouse"),
                "ClickHouse is referenced, never deployed"
            );
        }
    }

    #[test]
    fn metal_uses_the_clusters_default_class() {
        let objects = objects(&kubernetes(&plan(Cloud::Metal, Shape::AllInOne)));
        assert!(objects.iter().all(|o| o["kind"] != "StorageClass"));
        let set = objects.iter().find(|o| o["kind"] == "StatefulSet").expect("writer");
        assert!(set["spec"]["volumeClaimTemplates"][0]["spec"].get("storageClassName").is_none());
    }
}
