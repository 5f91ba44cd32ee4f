//! Match rules: parsing, matching, and the index that finds a broadcast's receivers.
