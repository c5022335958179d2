//! HTML report (to be written)
