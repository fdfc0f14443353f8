/// Everything that can stop an operation; running it again goes on from
/// where the stores stand.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] warren_store::StoreError),
    #[error(transparent)]
    Meta(#[from] warren_meta::MetaError),
    /// What the operation did does not check out.
    #[error("{0}")]
    Verification(String),
}
