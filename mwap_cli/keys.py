"""``mwap keys``: tenant API keys, and the encryption key ring (generate a key, rotate to it)."""

import sys

import click

from mwap import apikeys, rotation
from mwap_cli.context import OPERATOR, Context, json_flag, pass_ctx


@click.group()
def keys() -> None:
    """Tenant API keys and the encryption key ring."""


@keys.command("create")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--name", default="", help="A label for the key.")
@json_flag
@pass_ctx
def keys_create(ctx: Context, tenant_id: str, name: str) -> None:
    """Create a tenant API key. The key is shown once and stored only as a hash."""
    try:
        doc, key = apikeys.create(ctx.db, tenant_id, name=name, actor=OPERATOR)
    except LookupError as error:
        raise click.ClickException(str(error)) from None
    ctx.emit(
        {"id": doc["_id"], "tenantId": tenant_id, "key": key},
        f"{doc['_id']}  {key}\n(shown once; store it now)",
    )


@keys.command("revoke")
@click.argument("key_id")
@json_flag
@pass_ctx
def keys_revoke(ctx: Context, key_id: str) -> None:
    """Revoke a tenant API key by its id."""
    doc = apikeys.revoke(ctx.db, key_id, actor=OPERATOR)
    if doc is None:
        raise click.ClickException(f"no live key {key_id}")
    ctx.emit({"id": key_id, "revoked": True}, f"revoked {key_id}")


@keys.command("list")
@click.option("--tenant", "tenant_id", help="Only this tenant's keys.")
@json_flag
@pass_ctx
def keys_list(ctx: Context, tenant_id: str | None) -> None:
    """List API keys (ids and prefixes, never the keys)."""
    rows = apikeys.listing(ctx.db, tenant_id)
    ctx.emit(
        rows,
        lambda: (
            "\n".join(
                f"{r['_id']}  {r['tenantId']}  {r['prefix']}…  {'revoked' if r.get('revokedAt') else 'live'}  {r.get('name', '')}"
                for r in rows
            )
            or "no keys"
        ),
    )


@keys.command("rotate")
@click.option("--batch-size", default=200, show_default=True, type=click.IntRange(1, 10_000))
@json_flag
@pass_ctx
def keys_rotate(ctx: Context, batch_size: int) -> None:
    """Re-encrypt every stored secret under the newest key of MWAP_ENCRYPTION_KEYS. Resumable.

    Values in the MWAP backend's legacy format are converted too (set MWAP_LEGACY_ENCRYPTION_KEY).
    """
    ring = ctx.settings.key_ring()
    report = rotation.rotate(
        ctx.db,
        ring,
        batch_size=batch_size,
        progress=lambda collection, r: ctx.progress(
            f"{collection}: scanned {r.scanned}, rotated {r.rotated_secrets} secrets"
            f" ({r.legacy_converted} from the legacy format)"
        ),
    )
    data = {
        "primaryKey": ring.primary,
        "scanned": report.scanned,
        "rotatedDocuments": report.rotated_documents,
        "rotatedSecrets": report.rotated_secrets,
        "legacyConverted": report.legacy_converted,
        "failures": report.failures,
    }
    ctx.emit(
        data,
        f"rotated {report.rotated_secrets} secrets in {report.rotated_documents} documents to key {ring.primary}"
        f" ({report.legacy_converted} converted from the MWAP backend's legacy format)"
        + "".join(f"\n  ! {f['collection']}/{f['id']} {f['field']}: {f['error']}" for f in report.failures),
    )
    if report.failures:
        sys.exit(1)


@keys.command("generate")
@click.option("--kid", required=True, help="Key id for the new key, e.g. k2.")
def keys_generate(kid: str) -> None:
    """Print a new ring entry (kid:base64key) to put first in MWAP_ENCRYPTION_KEYS."""
    from mwap.crypto import KeyRing  # noqa: PLC0415 - only this command needs it

    click.echo(f"{kid}:{KeyRing.generate_key()}")
