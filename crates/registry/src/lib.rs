//! forge registry (work in progress).
