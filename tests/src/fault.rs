//! Fault injection (written next).
