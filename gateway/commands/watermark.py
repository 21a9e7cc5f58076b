"""`shareguard trace`, `shareguard verify` and `shareguard keys`: leaks, signatures and keys."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.commands.common import (
    add_json_flag,
    add_setting_flags,
    fail,
    print_json,
    settings_from,
)


def register(sub: Any) -> None:
    trace = sub.add_parser(
        "trace", help="溯源泄露文件 (trace a leaked file to the responses it came from)"
    )
    trace.add_argument("file", type=Path, help="JSON、NDJSON、CSV、XLSX 或文本 (any of these)")
    trace.add_argument(
        "--threshold",
        type=float,
        default=1e-3,
        help="列出偶然匹配概率低于此值的候选 (list candidates below this chance-match probability)",
    )
    trace.add_argument(
        "--layers", help="只运行这些解码器，逗号分隔 (run only these decoders, comma-separated)"
    )
    trace.add_argument(
        "--max-rows", type=int, default=100_000, help="最多检查的行数 (rows examined at most)"
    )
    trace.add_argument(
        "--no-alert", action="store_true", help="不触发告警 (do not raise the traced-leak alert)"
    )
    add_json_flag(trace)
    add_setting_flags(trace)
    trace.set_defaults(func=_trace)

    verify = sub.add_parser(
        "verify", help="验证平台响应签名 (check that a response came from the platform unaltered)"
    )
    verify.add_argument(
        "file",
        type=Path,
        help="保存的完整响应 curl -si，或配合 --signature 的响应体 (a saved response, or a body)",
    )
    verify.add_argument(
        "--signature",
        help="分离签名文件或其 URL (a detached signature document, file or URL: exports)",
    )
    verify.add_argument(
        "--public-keys",
        help="平台公钥文件或 URL (the platform's public keys: file or URL; default: the state"
        " folder's response-signing-keys.json)",
    )
    add_json_flag(verify)
    add_setting_flags(verify)
    verify.set_defaults(func=_verify)

    keys = sub.add_parser("keys", help="主密钥与签名密钥 (master and signing keys)")
    k = keys.add_subparsers(dest="keys_command", required=True)
    listing = k.add_parser("list", help="密钥版本 (key versions)")
    add_json_flag(listing)
    add_setting_flags(listing)
    listing.set_defaults(func=_keys_list)
    rotate = k.add_parser(
        "rotate", help="轮换：新增密钥版本，旧版本保留 (add a key version; old ones stay usable)"
    )
    add_json_flag(rotate)
    add_setting_flags(rotate)
    rotate.set_defaults(func=_keys_rotate)
    public = k.add_parser("public", help="响应签名公钥 JWK 集 (the response-signing public keys)")
    public.add_argument("--out", type=Path, help="写入文件 (write to a file)")
    add_setting_flags(public)
    public.set_defaults(func=_keys_public)
    rewrap = k.add_parser(
        "rewrap",
        help="用新口令重新加密全部密钥 (seal every key again under a new passphrase)",
    )
    rewrap.add_argument("--new-passphrase-file", type=Path, required=True)
    add_setting_flags(rewrap)
    rewrap.set_defaults(func=_keys_rewrap)


# -- trace ---------------------------------------------------------------------------------------


def _trace(args: argparse.Namespace) -> int:
    from gateway.audit.staff import cli_actor
    from gateway.commands.admin_common import admin_gateway
    from gateway.watermark.leakfile import LeakError, read_leak
    from gateway.watermark.policy import LAYERS
    from gateway.watermark.tracing import run_trace, sha256_of

    path: Path = args.file
    if not path.is_file():
        return fail(f"找不到文件 (no such file): {path}")
    layers = None
    if args.layers:
        layers = [x.strip() for x in args.layers.split(",") if x.strip()]
        unknown = sorted(set(layers) - set(LAYERS))
        if unknown:
            return fail(
                f"未知解码器 (unknown layers): {', '.join(unknown)}; 可选 {', '.join(LAYERS)}"
            )
    settings = settings_from(args)
    try:
        with _progress(path) as progress:
            table = read_leak(path, max_rows=args.max_rows, progress=progress)
    except LeakError as exc:
        return fail(f"无法读取泄露文件 (cannot read the leaked file): {exc}")
    with admin_gateway(settings) as gateway:
        result = run_trace(
            gateway,
            table,
            actor=cli_actor(),
            roles=("security",),
            source=path.name,
            data_sha256=sha256_of(path),
            layers=layers,
            threshold=args.threshold,
            alert=not args.no_alert,
        )
        gateway.detection.drain()
    if args.json:
        document = result.to_json()
        document["file"]["partial"] = table.partial
        print_json(document)
        return 0
    _print_trace(path, result, table.partial)
    return 0


class _progress:
    """A tqdm bar over the file's bytes, on a terminal and for files worth waiting for."""

    THRESHOLD = 8 << 20

    def __init__(self, path: Path) -> None:
        self.size = path.stat().st_size
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.size < self.THRESHOLD or not sys.stderr.isatty():
            return None
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.size, unit="B", unit_scale=True, desc="读取 (reading)", file=sys.stderr
        )
        return self.bar.update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _print_trace(path: Path, result: Any, partial: str | None) -> None:
    print(
        f"泄露文件 (leaked file) {path.name}: {result.file_format}，{result.rows_read} 行 (rows)，"
        f"检查 {result.rows_used} 行 (examined)；解码器 (decoders): {', '.join(result.layers)}"
    )
    if partial:
        print(f"注意：文件只读取了一部分 (note: part of the file was not read): {partial}")
    if not result.candidates:
        print("没有匹配的响应 (no response matches): 无候选 (no candidates)")
        return
    for i, c in enumerate(result.candidates, 1):
        e = c.entry
        print(
            f"\n{i}. 请求 (request) {e.request_id}  偶然匹配概率 (chance match) {c.probability:.1e}\n"
            f"   接收方 (recipient) {e.recipient}  人员 (user) {e.user_id}  部门 (department)"
            f" {e.department}  凭证 (credential) {e.credential_id}\n"
            f"   数据集 (dataset) {e.dataset}  用途 (purpose) {e.purpose}  时间 (issued)"
            f" {e.issued_local:%Y-%m-%d %H:%M:%S%z}  记录 (records) {e.records}  涉及主体"
            f" (data subjects) {c.subjects}"
        )
        for ev in sorted(c.evidence, key=lambda x: x.log10_p):
            print(f"   - [{ev.layer}] {ev.summary}  p={10 ** max(ev.log10_p, -300):.1e}")
    more = "（审计日志中已截断，至少 at least）" if result.subjects_truncated else ""
    print(
        f"\n涉及数据主体 (affected data subjects): {len(result.affected_subjects)} 人{more}；"
        "哈希见 --json (keyed hashes in --json; `shareguard incident report` names them)"
    )


# -- verify --------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace) -> int:
    import httpx
    import orjson

    from gateway.watermark.leakfile import LeakError, read_http_response
    from gateway.watermark.signing import KEYS_FILE, ResponseVerifier

    try:
        verifier = _verifier(args, ResponseVerifier, KEYS_FILE)
        data = args.file.read_bytes()
        if args.signature:
            raw = _fetch(args.signature)
            document = orjson.loads(raw)
            status, headers, body = int(document["status"]), dict(document["headers"]), data
        else:
            table = read_http_response(data, 1)
            if not table.responses:
                return fail("不是保存的 HTTP 响应 (not a saved HTTP response): 用 curl -si 保存")
            status, headers, body = table.responses[0]
    except (OSError, ValueError, KeyError, TypeError, LeakError, httpx.HTTPError) as exc:
        return fail(f"无法验证 (cannot verify): {exc}")
    report = verifier.verify(status, headers, body)
    if args.json:
        print_json(report.to_json())
    elif report.ok:
        p = report.provenance or {}
        print(
            f"验证通过 (verified): 平台密钥 (key) {report.key_id} 签名；请求 (request)"
            f" {p.get('request')}，接收方 (recipient) {p.get('recipient')}，数据集 (dataset)"
            f" {p.get('dataset')}；内容 (body) {report.body}"
        )
    else:
        for problem in report.problems:
            print(f"验证失败 (not verified): {problem}")
    return 0 if report.ok else 1


def _fetch(where: str) -> bytes:
    if where.startswith(("http://", "https://")):
        import httpx

        response = httpx.get(where, timeout=30)
        response.raise_for_status()
        return response.content
    return Path(where).read_bytes()


def _verifier(args: argparse.Namespace, cls: Any, keys_file: str) -> Any:
    import orjson

    if args.public_keys and args.public_keys.startswith(("http://", "https://")):
        return cls.from_jwks(orjson.loads(_fetch(args.public_keys)))
    if args.public_keys:
        return cls.from_file(Path(args.public_keys))
    return cls.from_file(settings_from(args).home / keys_file)


# -- keys ----------------------------------------------------------------------------------------


def _keys_list(args: argparse.Namespace) -> int:
    from gateway.watermark.signing import ResponseSigner

    settings = settings_from(args)
    keyring = settings.keyring()
    document = ResponseSigner(keyring).public_keys()
    if args.json:
        print_json(
            {
                "current": keyring.current_version,
                "sealed_with": keyring.vault.source,
                "versions": document["keys"],
            }
        )
        return 0
    print(f"主密钥封存方式 (sealed with): {keyring.vault.source}")
    for key in document["keys"]:
        mark = "*" if key["current"] else " "
        print(
            f"{mark} v{key['version']}  {key['created'] or ''}  签名密钥 (signing key) {key['kid']}"
        )
    return 0


def _keys_rotate(args: argparse.Namespace) -> int:
    from gateway.audit.journal import open_journal
    from gateway.audit.staff import cli_actor, staff_event
    from gateway.watermark.signing import ResponseSigner

    settings = settings_from(args)
    keyring = settings.keyring()
    before = keyring.current_version
    journal = open_journal(settings)
    try:
        version = keyring.rotate()
        signer = ResponseSigner(keyring)
        published = signer.publish(settings.home)
        journal.append(
            staff_event(
                cli_actor(),
                ("admin",),
                "keys-rotate",
                before={"version": before},
                after={"version": version, "signing_key": signer.key(version)[0]},
            )
        )
    finally:
        journal.close()
    if args.json:
        print_json({"version": version, "previous": before, "public_keys": str(published)})
    else:
        print(
            f"已轮换 (rotated): v{before} → v{version}；旧版本仍用于溯源与验证 (older versions stay"
            f" usable for tracing and verification)。公钥 (public keys): {published}"
        )
    return 0


def _keys_public(args: argparse.Namespace) -> int:
    import orjson

    from gateway.watermark.signing import ResponseSigner

    document = ResponseSigner(settings_from(args).keyring()).public_keys()
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    if args.out:
        args.out.write_bytes(data)
        print(f"公钥已写入 (public keys written to) {args.out}")
    else:
        sys.stdout.buffer.write(data)
    return 0


def _keys_rewrap(args: argparse.Namespace) -> int:
    from gateway.audit.journal import open_journal
    from gateway.audit.staff import cli_actor, staff_event
    from gateway.keys import KEK_FILE, KeyVault

    settings = settings_from(args)
    current = settings.keyring().vault
    new = KeyVault.open(settings.keys_dir, passphrase_file=args.new_passphrase_file)
    names = current.rewrap(new)
    if current.source == "file":
        (settings.keys_dir / KEK_FILE).unlink(missing_ok=True)
    journal = open_journal(settings)
    try:
        journal.append(
            staff_event(
                cli_actor(),
                ("admin",),
                "keys-rewrap",
                before={"sealed_with": current.source},
                after={"sealed_with": new.source, "keys": len(names)},
            )
        )
    finally:
        journal.close()
    print(
        f"已用新口令重新封存 {len(names)} 个密钥 (sealed {len(names)} keys under the new"
        f" passphrase)；请设置 SHAREGUARD_KEY_PASSPHRASE_FILE={args.new_passphrase_file}"
    )
    return 0
