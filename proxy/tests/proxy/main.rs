//! The proxy on 127.0.0.1:0 with a fake original-destination source, real
//! upstream listeners standing in for the original destinations, real
//! policies and a real audit log. All traffic stays on loopback.

mod agent;
mod bad_input;
mod intercept;
mod naming;
mod relay;
mod splice;
mod support;
mod upstreams;
