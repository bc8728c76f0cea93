pub mod attest;
pub mod keys;
pub mod lint;
pub mod policy;
pub mod reseal;
pub mod seal;
pub mod unseal;
pub mod validate;
