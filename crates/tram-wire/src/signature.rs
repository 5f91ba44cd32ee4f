//! Type signatures: single complete types, nesting limits, the 255-byte limit.

use crate::WireError;

/// The longest signature allowed.
pub const MAX_SIGNATURE_LEN: usize = 255;
/// Deepest struct nesting.
pub const MAX_STRUCT_DEPTH: usize = 32;
/// Deepest array nesting.
pub const MAX_ARRAY_DEPTH: usize = 32;
/// Deepest total nesting (structs plus arrays, and variants inside values).
pub const MAX_TOTAL_DEPTH: usize = 64;

/// Checks a signature: a sequence of zero or more single complete types within the limits.
///
/// # Errors
/// What is wrong with it.
pub fn validate(sig: &[u8]) -> Result<(), WireError> {
    let _ = sig;
    todo!()
}

/// Checks that `sig` is exactly one single complete type (as a variant's signature must be).
///
/// # Errors
/// What is wrong with it.
pub fn validate_single(sig: &[u8]) -> Result<(), WireError> {
    let _ = sig;
    todo!()
}
