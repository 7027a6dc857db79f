//! The crate's error type.

/// Everything that can fail in the model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model file could not be parsed.
    #[error("reading model file: {0}")]
    ModelFormat(#[from] serde_json::Error),
    /// The model file parsed but breaks an invariant (a child index out of range, a feature we do not know, ...).
    #[error("invalid model file: {0}")]
    InvalidModel(String),
    /// A model file on disk could not be read, parsed or used; names the file.
    #[error("model file {path}: {reason}")]
    ModelFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A simulator setting is out of range; names the setting.
    #[error("{0}")]
    Config(String),
    /// The evaluation against NEWS2 could not run on the readings given.
    #[error("evaluating the model: {0}")]
    Evaluation(String),
    /// Training could not run on the data given.
    #[error("training the forest: {0}")]
    Training(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
