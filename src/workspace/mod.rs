//! Workspaces: per-turn git snapshots with a private index, diffs between them, revert, and a
//! manifest fallback without git.
