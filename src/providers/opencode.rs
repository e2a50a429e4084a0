//! The opencode CLI: command lines and the pure parser of its JSON-lines output.
