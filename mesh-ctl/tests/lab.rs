//! Namespace labs (filled in next).
