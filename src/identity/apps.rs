//! Applications: created from config at start-up, by the CLI, or as the development application
//! on a first start with none.

use std::path::Path;

use super::secrets::random_hex;
use super::IdentityError;
use crate::config::ApplicationConfig;
use crate::db::{self, DbPool};
use crate::model::{AppId, Application, Clock};

impl From<&ApplicationConfig> for Application {
    fn from(c: &ApplicationConfig) -> Self {
        Application {
            id: AppId(c.id),
            name: c.name.clone(),
            auth_key: c.auth_key.clone(),
            auth_secret: c.auth_secret.clone(),
            require_signature: c.require_signature,
            session_creates_users: c.session_creates_users,
            dialog_extensions: c.dialog_extensions.clone(),
        }
    }
}

/// Creates or updates every application declared in config.
pub async fn sync_config(
    pool: &DbPool,
    clock: &Clock,
    apps: &[ApplicationConfig],
) -> Result<(), IdentityError> {
    for a in apps {
        check_extensions(&a.dialog_extensions)?;
        if a.id <= 0 || a.auth_key.trim().is_empty() || a.auth_secret.trim().is_empty() {
            return Err(IdentityError::invalid(
                "applications",
                format!(
                    "application {} needs a positive id, an auth_key and an auth_secret",
                    a.id
                ),
            ));
        }
        db::apps::upsert(pool, &a.into(), clock.now()).await?;
    }
    Ok(())
}

/// At most three extension fields, each a plain identifier (they become filter keys).
pub fn check_extensions(fields: &[String]) -> Result<(), IdentityError> {
    if fields.len() > 3 {
        return Err(IdentityError::invalid(
            "dialog_extensions",
            "allows at most 3 fields",
        ));
    }
    if let Some(bad) = fields.iter().find(|f| {
        f.is_empty() || f.len() > 64 || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    }) {
        return Err(IdentityError::invalid(
            "dialog_extensions",
            format!("`{bad}` is not a field name (letters, digits, _)"),
        ));
    }
    Ok(())
}

/// `parley app set-extensions`: which dialog extension fields an application allows.
pub async fn set_dialog_extensions(
    pool: &DbPool,
    clock: &Clock,
    id: AppId,
    fields: Vec<String>,
) -> Result<(), IdentityError> {
    check_extensions(&fields)?;
    if !db::apps::set_dialog_extensions(pool, id, &fields, clock.now()).await? {
        return Err(IdentityError::NotFound(format!(
            "application {id} not found"
        )));
    }
    Ok(())
}

/// Options of `parley app create`.
#[derive(Clone, Debug, Default)]
pub struct NewApp {
    pub name: String,
    pub id: Option<i64>,
    pub auth_key: Option<String>,
    pub auth_secret: Option<String>,
    pub require_signature: bool,
    pub dialog_extensions: Vec<String>,
}

/// Creates an application, generating the credentials not given.
pub async fn create(
    pool: &DbPool,
    clock: &Clock,
    new: NewApp,
) -> Result<Application, IdentityError> {
    if new.name.trim().is_empty() {
        return Err(IdentityError::invalid("name", "cannot be blank"));
    }
    check_extensions(&new.dialog_extensions)?;
    if new.id.is_some_and(|i| i <= 0) {
        return Err(IdentityError::invalid("id", "must be a positive integer"));
    }
    let app = Application {
        id: AppId(0),
        name: new.name,
        auth_key: new.auth_key.unwrap_or_else(|| random_hex(16)),
        auth_secret: new.auth_secret.unwrap_or_else(|| random_hex(16)),
        require_signature: new.require_signature,
        session_creates_users: true,
        dialog_extensions: new.dialog_extensions,
    };
    db::apps::insert(pool, &app, new.id.map(AppId), clock.now())
        .await
        .map_err(|e| match e.constraint() {
            Some("applications_pkey") => IdentityError::invalid("id", "has already been taken"),
            Some("applications_auth_key_key") => {
                IdentityError::invalid("auth_key", "has already been taken")
            }
            _ => e.into(),
        })
}

/// File (in the data dir) holding the development application's credentials.
pub const DEV_APP_FILE: &str = "dev-application.json";

/// On a first start with no application at all, creates a development application and writes
/// its credentials to `<data_dir>/dev-application.json`. Returns it when it was created now.
pub async fn ensure_dev_app(
    pool: &DbPool,
    clock: &Clock,
    data_dir: &Path,
) -> Result<Option<Application>, IdentityError> {
    let path = data_dir.join(DEV_APP_FILE);
    // The file holds an auth secret: a copy left readable by others (older versions wrote it
    // with the default mode) is restricted on every start.
    crate::secret_file::restrict(&path)
        .map_err(|e| IdentityError::Internal(format!("restrict {}: {e}", path.display())))?;
    if !db::apps::list(pool).await?.is_empty() {
        return Ok(None);
    }
    let app = create(
        pool,
        clock,
        NewApp {
            name: "development".into(),
            ..Default::default()
        },
    )
    .await?;
    let json = serde_json::json!({
        "application_id": app.id,
        "auth_key": app.auth_key,
        "auth_secret": app.auth_secret,
        "name": app.name,
    });
    crate::secret_file::write(&path, format!("{json:#}\n").as_bytes())
        .map_err(|e| IdentityError::Internal(format!("write {}: {e}", path.display())))?;
    Ok(Some(app))
}
