//! A fresh deployment's first start: the default organization, project 1
//! and a personal API key when the meta store has none, their secrets
//! written once to a file only the owner reads, and the dashboard's first
//! owner (configured, or generated).

use warren_core::config::WarrenConfig;
use warren_core::FIRST_START_CREDENTIALS;
use warren_meta::accounts::{NewUser, Role as MemberRole};
use warren_meta::audit::AuditEntry;
use warren_meta::{BootstrapRequest, MetaStore};

use crate::error::Step;
use crate::NodeError;

/// Creates a fresh deployment's project, keys and first sign-in when the
/// meta store has no project yet, and the configured admin once.
pub async fn bootstrap(meta: &dyn MetaStore, config: &WarrenConfig) -> Result<(), NodeError> {
    let request = BootstrapRequest {
        project_token: config.bootstrap.project_token.clone(),
        api_key: config.bootstrap.api_key.clone(),
        timezone: config.bootstrap.timezone.clone(),
    };
    if let Some(made) = meta.bootstrap(request).await.step(|| "bootstrapping the deployment".into())? {
        let mut secrets = vec![
            ("project_token", made.project.api_token.clone()),
            ("personal_api_key", made.api_key.clone()),
        ];
        if config.bootstrap.admin_email.is_none() {
            let password = first_admin(meta, made.project.organization_id).await?;
            secrets.push(("dashboard_email", FIRST_ADMIN_EMAIL.to_string()));
            secrets.push(("dashboard_password", password));
        }
        // Secrets go to a file only its owner reads, never to stdout or the
        // log, where terminals, journals and log shippers would keep them.
        let path = config.data_dir.join(FIRST_START_CREDENTIALS);
        write_credentials(&path, &secrets).step(|| {
            format!(
                "writing the first-start credentials to {}; they are not stored anywhere else: set \
                 [bootstrap] admin_email and admin_password to get a sign-in, then make new keys",
                path.display()
            )
        })?;
        println!("Warren created a new deployment. Its project token, personal API key and dashboard");
        println!("sign-in are in {} (readable by this user only);", path.display());
        println!("keep them somewhere safe and delete the file.");
        tracing::info!(
            project_id = made.project.id,
            credentials = %path.display(),
            "bootstrapped a new deployment"
        );
    }
    bootstrap_admin(meta, config).await
}

/// Writes `secrets` as `name = "value"` lines (TOML) to a new file at
/// `path`, mode 0600 from its creation, replacing one a wiped deployment
/// left there.
fn write_credentials(path: &std::path::Path, secrets: &[(&str, String)]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let mut text = String::from(
        "# Warren's first-start credentials, written once when this deployment was created.\n\
         # Warren never reads this file: keep the values somewhere safe, then delete it.\n",
    );
    for (name, value) in secrets {
        text.push_str(&format!("{name} = {}\n", serde_json::Value::from(value.as_str())));
    }
    // A temporary file is created 0600; renamed into place once durable.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Who signs into a new deployment's dashboard when no
/// `bootstrap.admin_email` was configured.
const FIRST_ADMIN_EMAIL: &str = "admin@warren.local";

/// Makes [`FIRST_ADMIN_EMAIL`] the owner of the new deployment's
/// organization with a random password, and returns the password.
async fn first_admin(meta: &dyn MetaStore, organization_id: i64) -> Result<String, NodeError> {
    use rand::distr::{Alphanumeric, SampleString};
    let password = Alphanumeric.sample_string(&mut rand::rng(), 20);
    make_owner(meta, organization_id, FIRST_ADMIN_EMAIL, &password, "bootstrap (first start)").await?;
    Ok(password)
}

/// Makes `bootstrap.admin_email` an owner of the default project's
/// organization, once: an existing account is left as it is.
async fn bootstrap_admin(meta: &dyn MetaStore, config: &WarrenConfig) -> Result<(), NodeError> {
    let (Some(email), Some(password)) = (&config.bootstrap.admin_email, &config.bootstrap.admin_password)
    else {
        if config.bootstrap.admin_email.is_some() {
            return Err(NodeError::Config("bootstrap.admin_email needs bootstrap.admin_password".into()));
        }
        return Ok(());
    };
    let what = || "creating the bootstrap admin user".to_string();
    if meta.user_by_email(email).await.step(what)?.is_some() {
        return Ok(());
    }
    let Some(project) = meta.project(1).await.step(what)? else { return Ok(()) };
    make_owner(meta, project.organization_id, email, password, "bootstrap.admin_email").await
}

/// Creates an account owning `organization_id`, and says so in the audit
/// log; `route` names what asked for it.
async fn make_owner(
    meta: &dyn MetaStore,
    organization_id: i64,
    email: &str,
    password: &str,
    route: &str,
) -> Result<(), NodeError> {
    let what = || format!("making {email} an owner of the deployment's organization");
    let name = email.split('@').next().unwrap_or(email).to_string();
    let user = meta
        .create_user(NewUser { email: email.to_string(), name, password: password.to_string() })
        .await
        .step(what)?;
    meta.set_role(organization_id, user.id, Some(MemberRole::Owner)).await.step(what)?;
    meta.record_audit(&AuditEntry {
        id: 0,
        at_us: chrono::Utc::now().timestamp_micros(),
        organization_id: Some(organization_id),
        project_id: None,
        user_id: Some(user.id),
        api_key_id: None,
        actor: "warren serve".into(),
        credential: "configuration".into(),
        action: "member.bootstrap".into(),
        method: "-".into(),
        route: route.into(),
        resource: Some(user.id.to_string()),
        source: "local".into(),
        status: 201,
        outcome: "ok".into(),
    })
    .await
    .step(what)?;
    tracing::info!(user = user.email, "created an owner of the deployment's organization");
    Ok(())
}

/// The name Warren's own project is created with.
pub(crate) const INTERNAL_PROJECT_NAME: &str = "Warren (internal)";
