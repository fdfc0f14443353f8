//! [`Teams`]: project tokens resolved to projects, remembered for the
//! life of the ingester (a token never moves to another project).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use warren_core::person::TeamId;
use warren_meta::Tenancy;

use crate::IngestError;

pub(crate) struct Teams {
    meta: Arc<dyn Tenancy>,
    known: HashMap<String, TeamId>,
}

impl Teams {
    pub fn new(meta: Arc<dyn Tenancy>) -> Self {
        Self { meta, known: HashMap::new() }
    }

    /// The project of `token`; `None` for a token no project has. Tokens
    /// found unknown are kept in `unknown`, which the caller scopes (a
    /// batch): a project created meanwhile is found by the next one.
    pub async fn of(
        &mut self,
        token: &str,
        unknown: &mut HashSet<String>,
    ) -> Result<Option<TeamId>, IngestError> {
        if let Some(team) = self.known.get(token) {
            return Ok(Some(*team));
        }
        if unknown.contains(token) {
            return Ok(None);
        }
        match self.meta.project_by_token(token).await? {
            Some(project) => {
                self.known.insert(token.to_string(), project.id);
                Ok(Some(project.id))
            }
            None => {
                unknown.insert(token.to_string());
                Ok(None)
            }
        }
    }
}
