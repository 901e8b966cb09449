pub mod gateway;
pub mod receiver;
pub mod webhooks;
