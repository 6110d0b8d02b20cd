//! `zerotrust`: the operator's tool. Run `zerotrust help` for the commands.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tower_zerotrust::BoxError;
use tower_zerotrust::mtls::CertificateAuthority;
use tower_zerotrust::sign::HmacSigner;

const USAGE: &str = "usage:
  zerotrust secret
      print a 256-bit random secret (hex), for SERVICE_SECRET
  zerotrust sign METHOD PATH
      print the HMAC headers for a request, signed with SERVICE_ID and SERVICE_SECRET,
      as curl -H arguments
  zerotrust ca --dir DIR [--cn NAME] [--days N]
      create a private CA: DIR/ca/cert.pem and DIR/ca/key.pem (0600)
  zerotrust server --dir DIR --name NAME [--host HOST]... [--ip IP]... [--days N]
      issue a server certificate from DIR/ca: DIR/NAME/{cert.pem,key.pem,ca.pem}
  zerotrust client --dir DIR --principal NAME [--spiffe URI] [--days N]
      issue a client certificate whose CN is NAME: DIR/NAME/{cert.pem,key.pem,ca.pem}";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("zerotrust: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), BoxError> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    match command.as_str() {
        "secret" => println!("{}", hex::encode(rand::random::<[u8; 32]>())),
        "sign" => {
            let [method, path] = rest else {
                return Err(USAGE.into());
            };
            let headers = HmacSigner::from_env()?.sign(&method.to_ascii_uppercase(), path);
            for (name, value) in headers.iter() {
                println!("-H '{name}: {value}'");
            }
        }
        "ca" => {
            let flags = Flags::parse(rest)?;
            let cn = flags.one("--cn")?.unwrap_or("Zero Trust Root CA");
            let ca = CertificateAuthority::generate(cn, flags.validity(3650)?)?;
            let dir = flags.dir()?;
            ca.write(&dir)?;
            println!("wrote {}", dir.join("ca").display());
        }
        "server" | "client" => {
            let flags = Flags::parse(rest)?;
            let dir = flags.dir()?;
            let read = |file: &str| std::fs::read_to_string(dir.join("ca").join(file));
            let ca = CertificateAuthority::from_pem(&read("cert.pem")?, &read("key.pem")?)?;
            let validity = flags.validity(365)?;
            let (name, issued) = if command == "server" {
                let name = flags.required("--name")?;
                let hosts: Vec<String> = flags.all("--host").map(str::to_owned).collect();
                let ips = flags
                    .all("--ip")
                    .map(str::parse)
                    .collect::<Result<Vec<IpAddr>, _>>()?;
                (name, ca.issue_server(name, &hosts, &ips, validity)?)
            } else {
                let name = flags.required("--principal")?;
                (
                    name,
                    ca.issue_client(name, flags.one("--spiffe")?, validity)?,
                )
            };
            ca.write_issued(&dir, name, &issued)?;
            println!("wrote {}", dir.join(name).display());
        }
        "help" | "--help" | "-h" => println!("{USAGE}"),
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

/// `--flag value` pairs.
struct Flags<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Flags<'a> {
    fn parse(args: &'a [String]) -> Result<Self, BoxError> {
        if !args.len().is_multiple_of(2) || args.iter().step_by(2).any(|a| !a.starts_with("--")) {
            return Err(USAGE.into());
        }
        Ok(Self(
            args.chunks(2)
                .map(|pair| (pair[0].as_str(), pair[1].as_str()))
                .collect(),
        ))
    }

    fn all(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        self.0
            .iter()
            .filter(move |(k, _)| *k == name)
            .map(|(_, v)| *v)
    }

    fn one(&self, name: &str) -> Result<Option<&'a str>, BoxError> {
        let mut values = self.0.iter().filter(|(k, _)| *k == name).map(|(_, v)| *v);
        match (values.next(), values.next()) {
            (value, None) => Ok(value),
            _ => Err(format!("{name} given twice").into()),
        }
    }

    fn required(&self, name: &str) -> Result<&'a str, BoxError> {
        self.one(name)?
            .ok_or_else(|| format!("{name} is required").into())
    }

    fn dir(&self) -> Result<PathBuf, BoxError> {
        self.required("--dir").map(PathBuf::from)
    }

    fn validity(&self, default_days: u64) -> Result<Duration, BoxError> {
        let days = match self.one("--days")? {
            Some(days) => days.parse::<u64>()?,
            None => default_days,
        };
        Ok(Duration::from_secs(days * 86_400))
    }
}
