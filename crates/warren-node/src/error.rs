/// What stops a process from starting or from stopping cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A step failed; `what` says which, for the operator (the cause
    /// follows in the error's chain).
    #[error("{what}")]
    Step {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configuration asks for something that cannot run.
    #[error("{0}")]
    Config(String),
}

/// Names the step a fallible call belongs to, as the operator reads it.
/// (anyhow's `context`, for a library that keeps typed errors.)
pub(crate) trait Step<T> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, NodeError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Step<T> for Result<T, E> {
    fn step(self, what: impl FnOnce() -> String) -> Result<T, NodeError> {
        self.map_err(|source| NodeError::Step { what: what(), source: Box::new(source) })
    }
}
