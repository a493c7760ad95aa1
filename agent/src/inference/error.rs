//! Why a prediction or a model operation failed, by kind: the one type every inference
//! transport maps to its own status codes and error shapes.

/// Where in a request a bad value was found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Place {
    /// The record's index in a batch.
    pub record: Option<usize>,
    /// The field (column, tensor or key).
    pub field: Option<String>,
}

impl Place {
    pub fn field(field: impl Into<String>) -> Self {
        Self {
            record: None,
            field: Some(field.into()),
        }
    }

    pub fn at(record: usize, field: impl Into<String>) -> Self {
        Self {
            record: Some(record),
            field: Some(field.into()),
        }
    }

    fn prefix(&self) -> String {
        match (&self.record, &self.field) {
            (Some(r), Some(f)) => format!("record {r}: field `{f}`: "),
            (Some(r), None) => format!("record {r}: "),
            (None, Some(f)) => format!("field `{f}`: "),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// No model is loaded yet.
    #[error("no model is being served yet (following {following}){}", detail(.reason))]
    NotReady { following: String, reason: String },
    /// A value does not fit the model's input signature.
    #[error("{}{reason}", .place.prefix())]
    Invalid { place: Place, reason: String },
    /// The body is not the protocol's shape (not JSON, wrong structure, bad tensor shape).
    #[error("{reason}")]
    Malformed { reason: String },
    /// A request with no records.
    #[error("the request holds no records")]
    Empty,
    /// A body or batch over a configured limit.
    #[error("the {what} is over the limit of {limit} {unit} (setting `{setting}`)")]
    TooLarge {
        what: &'static str,
        limit: u64,
        unit: &'static str,
        setting: &'static str,
    },
    /// The request names a model or version other than the one served.
    #[error("{reason}")]
    UnknownModel { reason: String },
    /// A content type the endpoint does not read.
    #[error("{reason}")]
    Unsupported { reason: String },
    /// A requested reload could not be done (the registry is unreachable, the bundle refused).
    #[error("cannot load the model: {reason}")]
    Reload { reason: String },
    /// The runtime failed on valid input: a defect, never the caller's fault.
    #[error("scoring failed: {reason}")]
    Internal { reason: String },
}

fn detail(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

impl InferenceError {
    pub fn invalid(place: Place, reason: impl Into<String>) -> Self {
        Self::Invalid {
            place,
            reason: reason.into(),
        }
    }

    pub fn malformed(reason: impl Into<String>) -> Self {
        Self::Malformed {
            reason: reason.into(),
        }
    }

    /// A bounded label for metrics: one per variant, never a value from the request.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotReady { .. } => "not_ready",
            Self::Invalid { .. } => "invalid_input",
            Self::Malformed { .. } => "malformed",
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::UnknownModel { .. } => "unknown_model",
            Self::Unsupported { .. } => "unsupported",
            Self::Reload { .. } => "reload",
            Self::Internal { .. } => "internal",
        }
    }

    /// Where the bad value was, for error bodies that name it apart from the message.
    pub fn place(&self) -> Option<&Place> {
        match self {
            Self::Invalid { place, .. } => Some(place),
            _ => None,
        }
    }
}
