//! forge parser (work in progress).
