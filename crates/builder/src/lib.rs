//! forge builder (work in progress).
