//! `zerotrust`: the operator's tool.
//!
//! ```text
//! zerotrust secret                      a 256-bit random secret, hex (for SERVICE_SECRET)
//! zerotrust sign METHOD PATH            the four HMAC headers, signed with SERVICE_ID and
//!                                       SERVICE_SECRET, as curl -H arguments
//! ```

use std::process::ExitCode;

use tower_zerotrust::sign::HmacSigner;

const USAGE: &str = "usage:
  zerotrust secret              print a 256-bit random secret (hex), for SERVICE_SECRET
  zerotrust sign METHOD PATH    print the HMAC headers for a request, signed with
                                SERVICE_ID and SERVICE_SECRET, as curl -H arguments";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["secret"] => {
            println!("{}", hex::encode(rand::random::<[u8; 32]>()));
            ExitCode::SUCCESS
        }
        ["sign", method, path] => match HmacSigner::from_env() {
            Ok(signer) => {
                let headers = signer.sign(&method.to_ascii_uppercase(), path);
                for (name, value) in headers.iter() {
                    println!("-H '{name}: {value}'");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("zerotrust sign: {error}");
                ExitCode::from(2)
            }
        },
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
