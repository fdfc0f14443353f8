//! The rule a project token must follow, shared by capture (which checks
//! what SDKs send) and the meta store (which checks what it creates).

/// Longest accepted project token.
pub const MAX_PROJECT_TOKEN_LEN: usize = 64;
/// Prefix of personal API keys; a project token must not carry it.
pub const PERSONAL_API_KEY_PREFIX: &str = "phx_";

/// Why a string is not a usable project token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Empty,
    TooLong,
    NotAscii,
    ContainsNul,
    /// A personal API key sent where the project token belongs.
    PersonalApiKey,
}

impl TokenProblem {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "longer than 64 characters",
            Self::NotAscii => "not ASCII",
            Self::ContainsNul => "contains NUL",
            Self::PersonalApiKey => "starts with phx_, which marks a personal API key",
        }
    }
}

/// Checks an already trimmed token.
pub fn check_project_token(token: &str) -> Result<(), TokenProblem> {
    if token.is_empty() {
        Err(TokenProblem::Empty)
    } else if token.len() > MAX_PROJECT_TOKEN_LEN {
        Err(TokenProblem::TooLong)
    } else if !token.is_ascii() {
        Err(TokenProblem::NotAscii)
    } else if token.contains('\0') {
        Err(TokenProblem::ContainsNul)
    } else if token.starts_with(PERSONAL_API_KEY_PREFIX) {
        Err(TokenProblem::PersonalApiKey)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_rules() {
        assert_eq!(check_project_token("phc_ok"), Ok(()));
        assert_eq!(check_project_token(""), Err(TokenProblem::Empty));
        assert_eq!(check_project_token(&"t".repeat(65)), Err(TokenProblem::TooLong));
        assert_eq!(check_project_token("tøken"), Err(TokenProblem::NotAscii));
        assert_eq!(check_project_token("a\0b"), Err(TokenProblem::ContainsNul));
        assert_eq!(check_project_token("phx_key"), Err(TokenProblem::PersonalApiKey));
    }
}
