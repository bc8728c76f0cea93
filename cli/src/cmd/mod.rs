pub mod keys;
pub mod reseal;
pub mod seal;
pub mod unseal;
pub mod validate;
