//! systemd units for a machine without Kubernetes: the service runs as its
//! own system user, sees the file system read-only but for its state
//! directory, and gets the limits of its size profile. Secrets come from
//! `/etc/warren/warren.env` (owner-only), never from the unit or
//! `warren.toml`.

use super::{config_file, Artefact, ExternalStores, Resources, Shape, Size};

/// What to write.
#[derive(Debug, Clone)]
pub struct SystemdPlan {
    pub shape: Shape,
    pub size: Size,
    /// Where the `warren` binary is installed.
    pub binary: String,
    pub stores: ExternalStores,
}

/// The units and the files they read: `warren.service` (every role, or
/// the writer), `warren-query@.service` for the roles shape (one instance
/// per port: `systemctl start warren-query@8001`), the configuration, and
/// the sysusers.d entry that creates the `warren` user.
pub fn systemd_units(plan: &SystemdPlan) -> Vec<Artefact> {
    let resources = plan.size.resources();
    let mut files = vec![
        Artefact::new("warren.service", writer_unit(plan, resources)),
        Artefact::new(
            "warren.toml",
            config_file("/var/lib/warren", "all", resources, &plan.stores, Some("127.0.0.1:9090")),
        ),
        Artefact::new("warren.sysusers.conf", "u warren - \"Warren analytics\" /var/lib/warren\n"),
    ];
    if plan.shape == Shape::Roles {
        files.push(Artefact::new("warren-query@.service", query_unit(plan, resources)));
        // Query processes listen on the port their instance names and
        // serve /metrics there too.
        files.push(Artefact::new(
            "warren-query.toml",
            config_file("/var/lib/warren-query", "query", resources, &plan.stores, None),
        ));
    }
    files
}

fn writer_unit(plan: &SystemdPlan, resources: Resources) -> String {
    let binary = &plan.binary;
    format!(
        "[Unit]\n\
         Description=Warren product analytics\n\
         After=network-online.target\n\
         Wants=network-online.target\n\n\
         [Service]\n\
         Type=exec\n\
         # Pending migrations of every store first; the ClickHouse cluster's\n\
         # resume where they stopped if this start is interrupted.\n\
         ExecStartPre={binary} migrate up --config /etc/warren/warren.toml\n\
         # Those can run for hours: no start timeout.\n\
         TimeoutStartSec=infinity\n\
         ExecStart={binary} serve --config /etc/warren/warren.toml\n\
         StateDirectory=warren\n\
         WorkingDirectory=/var/lib/warren\n\
         {}",
        hardening(resources)
    )
}

fn query_unit(plan: &SystemdPlan, resources: Resources) -> String {
    let binary = &plan.binary;
    format!(
        "[Unit]\n\
         Description=Warren query process on port %i\n\
         After=network-online.target warren.service\n\
         Wants=network-online.target\n\n\
         [Service]\n\
         Type=exec\n\
         ExecStart={binary} serve --config /etc/warren/warren-query.toml --listen 0.0.0.0:%i --data-dir /var/lib/warren-query/%i\n\
         # Its health events would reach a log no ingest reads.\n\
         Environment=WARREN_SELF_MONITORING__ENABLED=false\n\
         StateDirectory=warren-query/%i\n\
         WorkingDirectory=/var/lib/warren-query/%i\n\
         {}",
        hardening(resources)
    )
}

/// The `[Service]` settings every unit shares, and `[Install]`.
fn hardening(resources: Resources) -> String {
    format!(
        "EnvironmentFile=-/etc/warren/warren.env\n\
         User=warren\n\
         Group=warren\n\
         Restart=on-failure\n\
         RestartSec=5\n\
         # SIGTERM drains requests and ingest's batch before the process exits.\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=90\n\
         LimitNOFILE=65536\n\
         MemoryMax={memory}M\n\
         TasksMax=4096\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         CapabilityBoundingSet=\n\
         UMask=0077\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        memory = resources.memory_mib
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roles_shape_adds_a_query_template() {
        let plan = SystemdPlan {
            shape: Shape::Roles,
            size: Size::Medium,
            binary: "/usr/local/bin/warren".into(),
            stores: ExternalStores::default(),
        };
        let files = systemd_units(&plan);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "warren.service",
                "warren.toml",
                "warren.sysusers.conf",
                "warren-query@.service",
                "warren-query.toml"
            ]
        );
        assert!(files[0].text.contains("MemoryMax=16384M"));
        assert!(files[0].text.contains("TimeoutStartSec=infinity"), "migrations may run for hours");
        assert!(files[1].text.contains("admin_listen = \"127.0.0.1:9090\""), "metrics stay on the machine");
        assert!(files[3].text.contains("--listen 0.0.0.0:%i"));
        assert!(!files[4].text.contains("admin_listen"), "each query process serves its metrics on its port");
    }
}
