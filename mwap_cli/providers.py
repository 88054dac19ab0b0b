"""``mwap providers``: register cloud providers (their client secret stored encrypted)."""

from typing import Any

import click

from mwap import registry
from mwap_cli.context import OPERATOR, Context, create, json_flag, parse, pass_ctx
from mwap_cli.secret_input import read_secret, secret_option


@click.group()
def providers() -> None:
    """Cloud providers."""


@providers.command("add")
@click.option("--slug", required=True, type=click.Choice(["google-drive", "dropbox", "onedrive"]))
@click.option("--name", required=True, help="Display name, unique (e.g. 'Google Drive').")
@click.option("--auth-url", required=True)
@click.option("--token-url", required=True)
@click.option("--api-base-url", help="Stored as metadata.apiBaseUrl; default: the provider's real API.")
@click.option("--client-id", required=True)
@secret_option("client-secret", "MWAP_PROVIDER_CLIENT_SECRET", "client secret", required=True)
@click.option("--scope", "scopes", multiple=True)
@click.option("--grant-type", default="authorization_code", show_default=True)
@click.option("--token-method", default="POST", show_default=True, type=click.Choice(["POST", "GET"]))
@click.option("--created-by", default="mwap-tasks", show_default=True)
@json_flag
@pass_ctx
def providers_add(ctx: Context, /, **options: Any) -> None:
    """Register a provider (the client secret is stored encrypted).

    The client secret comes from --client-secret-file (a file, or - for standard input), from
    MWAP_PROVIDER_CLIENT_SECRET, or a hidden prompt; never from the command line.
    """
    client_secret = read_secret(
        options["client_secret_file"],
        "client-secret",
        "MWAP_PROVIDER_CLIENT_SECRET",
        "client secret",
        required=True,
    )
    body = parse(
        registry.ProviderCreate,
        {
            "slug": options["slug"],
            "name": options["name"],
            "authUrl": options["auth_url"],
            "tokenUrl": options["token_url"],
            "clientId": options["client_id"],
            "clientSecret": client_secret,
            "scopes": list(options["scopes"]),
            "grantType": options["grant_type"],
            "tokenMethod": options["token_method"],
            "apiBaseUrl": options["api_base_url"],
            "createdBy": options["created_by"],
        },
    )
    doc = create(lambda: registry.create_provider(ctx.db, ctx.settings.key_ring(), body, actor=OPERATOR))
    ctx.emit(registry.public_provider(doc), f"provider {doc['_id']} created")
