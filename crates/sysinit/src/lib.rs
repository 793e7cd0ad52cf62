//! sysinit
