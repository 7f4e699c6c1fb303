//! (filled in by the accountability/deliverability work)
