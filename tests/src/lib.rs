pub mod rest_harness;
