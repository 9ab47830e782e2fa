//! The HTTP ceiling for `bench/load`: a minimal axum server answering every `GET` with a fixed
//! JSON body (read once from a file), with the same runtime and HTTP stack as callflowd.
//!
//! `cargo run --release --example baseline -- 127.0.0.1:18081 body.json`

#![forbid(unsafe_code)]

use axum::http::header;
use axum::response::IntoResponse;
use bytes::Bytes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let body = match args.next() {
        Some(path) => Bytes::from(std::fs::read(path)?),
        None => Bytes::from_static(br#"{"data":{},"status":"success"}"#),
    };
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("baseline listening addr={}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
