"""`olol certs`: a cluster token, a small cluster CA and host certificates, for people who have no PKI.

Imports inside functions are start-up cost kept off the other commands (see `olol.cli`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from olol.cli.common import fail

DEFAULT_DIR = Path("~/.olol/certs")

DIR_OPTION = typer.Option(DEFAULT_DIR, "--dir", "-d", help="Where the CA and certificates live.")
FORCE_OPTION = typer.Option(False, "--force", help="Replace existing files.")


def register(app: typer.Typer) -> None:
    certs = typer.Typer(
        name="certs",
        help="Create the cluster token, a cluster CA and host certificates (TLS for gRPC and HTTPS).\n\n"
        "Typical setup: `olol certs token`, `olol certs init`, then `olol certs host NAME --ip ADDR` per host; "
        "copy ca.crt and the host's NAME.crt/NAME.key to it and start it with "
        "--tls-cert NAME.crt --tls-key NAME.key --tls-ca ca.crt --token-file token.",
        no_args_is_help=True,
    )
    app.add_typer(certs, name="certs")

    @certs.command("token")
    def token(
        out: Path = typer.Option(None, "--out", "-o", help="Write it to this file (0600) instead of printing it."),
        force: bool = FORCE_OPTION,
    ) -> None:
        """Make a random cluster token (256 bits) for --token / --token-file / $OLOL_TOKEN."""
        from olol.security.certs import generate_token, write_token

        if out is None:
            typer.echo(generate_token())
            return
        try:
            write_token(out.expanduser(), force=force)
        except FileExistsError as exc:
            fail(str(exc))
        typer.echo(f"wrote {out} (pass it with --token-file {out})")

    @certs.command("init")
    def init(
        directory: Path = DIR_OPTION,
        name: str = typer.Option("OLOL cluster CA", "--name", help="The CA's common name."),
        days: int = typer.Option(3650, "--days", help="Validity of the CA."),
        force: bool = FORCE_OPTION,
    ) -> None:
        """Create the cluster CA (ca.crt, ca.key). Keep ca.key on one trusted machine."""
        from olol.security.certs import create_ca

        try:
            pair = create_ca(directory.expanduser(), name, days=days, force=force)
        except FileExistsError as exc:
            fail(str(exc))
            return
        typer.echo(f"CA: {pair.cert}\nkey: {pair.key} (keep it private; it signs every host certificate)")

    @certs.command("host")
    def host(
        name: str = typer.Argument(..., help="Host name (or IP) the certificate is for; also its file name."),
        ip: list[str] = typer.Option(None, "--ip", help="An IP address the host is dialed at (repeatable)."),
        dns: list[str] = typer.Option(None, "--dns", help="Another DNS name of the host (repeatable)."),
        directory: Path = DIR_OPTION,
        days: int = typer.Option(825, "--days", help="Validity of the certificate."),
        force: bool = FORCE_OPTION,
    ) -> None:
        """Issue NAME.crt / NAME.key, valid as server and client certificate (mutual TLS)."""
        from olol.security.certs import CertPair, issue_host_cert

        folder = directory.expanduser()
        ca = CertPair(folder / "ca.crt", folder / "ca.key")
        if not ca.cert.is_file() or not ca.key.is_file():
            fail(f"no CA in {folder}: run `olol certs init --dir {directory}` first")
        try:
            pair = issue_host_cert(ca, name, folder, dns=dns or (), ips=ip or (), days=days, force=force)
        except (FileExistsError, ValueError) as exc:
            fail(str(exc))
            return
        typer.echo(f"certificate: {pair.cert}\nkey: {pair.key}\nCA: {ca.cert}")
