/// Everything that can stop an operation; running it again goes on from
/// where the stores stand.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] warren_store::StoreError),
    #[error(transparent)]
    Meta(#[from] warren_meta::MetaError),
    #[error(transparent)]
    Log(#[from] warren_log::LogError),
    /// What the operation did does not check out.
    #[error("{0}")]
    Verification(String),
    /// The backup target could not be read or written.
    #[error("backup target: {0}")]
    Target(#[from] object_store::Error),
    /// A local file or directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The operation would do harm as asked, or cannot do it at all; the
    /// message says what to do instead.
    #[error("{0}")]
    Refused(String),
}

impl OpsError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
