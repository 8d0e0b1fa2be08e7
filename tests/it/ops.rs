//! Operational endpoints and the error rendering every route shares.
