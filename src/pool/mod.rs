//! The provider account pool: pure selection, cooldown policy, credential validation and usage
//! parsing (being written).
