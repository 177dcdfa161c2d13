"""What every Redis-protocol state store shares (redis-py sync and async, Upstash sync and async).

* :class:`Keyspace`: how a (namespace, key) pair becomes one Redis key, and the escaped SCAN patterns.
* The value codecs: binary for RESP clients, text for REST clients that only carry UTF-8.
* :data:`INCREMENT_SCRIPT`: the Lua script that makes ``increment`` one atomic server-side step.
* :class:`StatePlans`: every operation written once, without I/O, as a generator that yields
  :class:`Commands` (or a :class:`ScriptCall`) and receives the replies. A store only supplies a
  driver that sends those commands, sync or async; :func:`drive` and :func:`drive_async` run a plan
  over it. So the four stores cannot drift apart in key layout, TTL handling or result mapping.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from storebridge.errors import ValidationError
from storebridge.state import (
    AsyncStateStore,
    StateStore,
    check_amount,
    check_key,
    check_keys,
    check_namespace,
    check_ttl,
    decode_value,
    encode_value,
    key_matches,
    scan_prefix,
)

T = TypeVar("T")

#: The first segment of every key storebridge writes, so its keys are easy to find with ``redis-cli --scan``.
ROOT = "sb"
#: Keys per MGET / DEL command, so one huge batch never becomes one huge command.
CHUNK = 500
#: The COUNT hint of each SCAN step: how many slots the server walks per round trip.
SCAN_COUNT = 1000
#: Redis glob metacharacters (``stringmatchlen``); a backslash makes the next character literal.
_REDIS_GLOB_CHARS = frozenset("*?[]\\")
#: Tag of the text codec's base64 form of bytes (the core codec's tags are ``s``, ``b`` and ``j``).
_BASE64_BYTES = b"B"


# -- keys ------------------------------------------------------------------------------------------------


def escape_glob(text: str) -> str:
    """``text`` as a Redis MATCH pattern that matches exactly itself."""
    return "".join("\\" + char if char in _REDIS_GLOB_CHARS else char for char in text)


def _utf8(text: Any, what: str) -> str:
    """A str Redis can carry: the clients send UTF-8, which a lone surrogate cannot be encoded in."""
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a string, got {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None
    return text


class Keyspace:
    """Maps a store's keys into one shared Redis database: ``sb:<len(namespace)>:<namespace>:<key>``.

    The namespace's length comes first, so the mapping is injective even though namespaces may
    contain ``:``: namespace ``a`` + key ``b:c`` is ``sb:1:a:b:c``, namespace ``a:b`` + key ``c`` is
    ``sb:3:a:b:c``. Every key of one namespace, and nothing else, starts with :attr:`prefix`.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.prefix = f"{ROOT}:{len(self.namespace)}:{self.namespace}:"

    def full_key(self, key: Any) -> str:
        return self.prefix + check_key(key)

    def user_key(self, stored: bytes | str) -> str:
        """The user's key from a full Redis key returned by SCAN."""
        text = stored.decode("utf-8") if isinstance(stored, bytes) else stored
        if not text.startswith(self.prefix):  # SCAN MATCH on the prefix makes this impossible
            raise ValidationError(f"Redis key {text!r} is not in namespace {self.namespace!r}")
        return text[len(self.prefix):]

    def scan_pattern(self, key_prefix: str = "") -> str:
        """The MATCH pattern for this namespace's keys starting with ``key_prefix`` (both escaped)."""
        return escape_glob(self.prefix + key_prefix) + "*"


# -- values ----------------------------------------------------------------------------------------------


def _tagged(value: Any) -> bytes:
    try:
        return encode_value(value)
    except UnicodeEncodeError:  # a str holding a lone surrogate
        raise ValidationError(f"state value {value!r} is not valid Unicode (it contains a lone surrogate)") from None


class ValueCodec(Protocol):
    def encode(self, value: Any) -> bytes | str: ...


class BinaryCodec:
    """For RESP clients (redis-py), which carry any bytes: exactly the core's tagged encoding."""

    def encode(self, value: Any) -> bytes:
        return _tagged(value)


class TextCodec:
    """For REST clients (Upstash), which carry UTF-8 text only: str and JSON values as the core's
    tagged encoding (already UTF-8), bytes as ``B`` + base64 instead of raw bytes."""

    def encode(self, value: Any) -> str:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return (_BASE64_BYTES + base64.b64encode(bytes(value))).decode("ascii")
        return _tagged(value).decode("utf-8")


def decode_stored(data: bytes | str) -> Any:
    """A stored value back as the caller's type, whichever codec wrote it."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if raw[:1] == _BASE64_BYTES:
        try:
            return base64.b64decode(raw[1:], validate=True)
        except binascii.Error:
            raise ValidationError("stored value has the base64 bytes tag but is not base64") from None
    return decode_value(raw)


def ttl_milliseconds(ttl: float | None) -> int | None:
    """A validated TTL in whole milliseconds (Redis' finest unit), at least 1 so it stays a TTL."""
    seconds = check_ttl(ttl)
    return None if seconds is None else max(1, round(seconds * 1000))


# -- increment -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LuaScript:
    source: str

    @property
    def sha1(self) -> str:
        return hashlib.sha1(self.source.encode("utf-8")).hexdigest()


#: KEYS[1]: the full key. ARGV[1]: the amount as JSON number text.
#: Returns {1, new stored value} | {0, old stored value} (not a number) | {2} (the sum overflows).
#:
#: It follows Python's rules exactly: int + int stays an int of any size (added as decimal strings,
#: since Lua 5.1 numbers are doubles), anything with a float is a float (written with '.0' or an
#: exponent so it reads back as a float). Bools are JSON ``true``/``false``, not numbers, and are refused.
INCREMENT_SCRIPT = LuaScript(r"""
local function is_int(s) return string.find(s, '^%-?%d+$') ~= nil end
local function is_number(s)
  return string.find(s, '^%-?%d+%.?%d*[eE]?[%+%-]?%d*$') ~= nil and tonumber(s) ~= nil
end
local function magnitude(s)
  local negative = string.sub(s, 1, 1) == '-'
  if negative then s = string.sub(s, 2) end
  s = string.gsub(s, '^0+(%d)', '%1')
  return negative, s
end
local function compare(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end
local function add(a, b)
  local out, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48 end
    if j > 0 then d = d + string.byte(b, j) - 48 end
    out[#out + 1] = string.char(48 + d % 10)
    carry = (d - d % 10) / 10
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end
local function subtract(a, b)
  local out, borrow, i, j = {}, 0, #a, #b
  while i > 0 do
    local d = string.byte(a, i) - 48 - borrow
    if j > 0 then d = d - (string.byte(b, j) - 48) end
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
    i, j = i - 1, j - 1
  end
  local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  if s == '' then return '0' end
  return s
end
local function signed(negative, m)
  if negative and m ~= '0' then return '-' .. m end
  return m
end
local function add_ints(x, y)
  local xneg, xm = magnitude(x)
  local yneg, ym = magnitude(y)
  if xneg == yneg then return signed(xneg, add(xm, ym)) end
  local order = compare(xm, ym)
  if order == 0 then return '0' end
  if order > 0 then return signed(xneg, subtract(xm, ym)) end
  return signed(yneg, subtract(ym, xm))
end
local function format_float(x)
  local s
  for _, digits in ipairs({15, 16, 17}) do
    s = string.format('%.' .. digits .. 'g', x)
    if tonumber(s) == x then break end
  end
  if not string.find(s, '[%.eE]') then s = s .. '.0' end
  return s
end

local stored = redis.call('GET', KEYS[1])
local current = '0'
if stored then
  if string.sub(stored, 1, 1) ~= 'j' then return {0, stored} end
  current = string.sub(stored, 2)
  if not is_number(current) then return {0, stored} end
end
local amount = ARGV[1]
local result
if is_int(current) and is_int(amount) then
  result = add_ints(current, amount)
else
  local sum = tonumber(current) + tonumber(amount)
  if sum ~= sum or sum == math.huge or sum == -math.huge then return {2} end
  result = format_float(sum)
end
redis.call('SET', KEYS[1], 'j' .. result, 'KEEPTTL')
return {1, 'j' .. result}
""")


def amount_text(amount: Any) -> str:
    """The increment amount as the JSON number text the script reads."""
    return json.dumps(check_amount(amount))


# -- operations as plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commands:
    """Commands to send in one round trip; their replies come back as a list, in order.
    ``atomic`` wraps them in MULTI/EXEC: they run together, with no other client's command between."""

    commands: tuple[tuple[Any, ...], ...]
    atomic: bool = False


@dataclass(frozen=True)
class ScriptCall:
    """Run :data:`INCREMENT_SCRIPT` (the only script); the reply is the script's return value."""

    keys: tuple[str, ...]
    args: tuple[str, ...]


Request = Commands | ScriptCall
Plan = Generator[Request, Any, T]


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


def _scan_reply(reply: Any) -> tuple[int, list[bytes | str]]:
    """SCAN's (cursor, keys), whether the client already parsed it or not."""
    cursor, found = reply
    return int(cursor), list(found)


class StatePlans:
    """Every state operation as a plan of Redis commands. Input is validated (and values encoded)
    before the first command is yielded, so a rejected call sends nothing."""

    def __init__(self, keyspace: Keyspace, codec: ValueCodec) -> None:
        self.keyspace = keyspace
        self.codec = codec

    def get(self, key: str, default: Any) -> Plan[Any]:
        (stored,) = yield Commands((("GET", self.keyspace.full_key(key)),))
        return default if stored is None else decode_stored(stored)

    def set(self, key: str, value: Any, ttl: float | None) -> Plan[None]:
        milliseconds = ttl_milliseconds(ttl)
        yield Commands((self._set_command(self.keyspace.full_key(key), value, milliseconds),))

    def _set_command(self, full_key: str, value: Any, milliseconds: int | None) -> tuple[Any, ...]:
        command: tuple[Any, ...] = ("SET", full_key, self.codec.encode(value))
        return command if milliseconds is None else (*command, "PX", milliseconds)

    def delete(self, key: str) -> Plan[bool]:
        (removed,) = yield Commands((("DEL", self.keyspace.full_key(key)),))
        return int(removed) > 0

    def exists(self, key: str) -> Plan[bool]:
        (found,) = yield Commands((("EXISTS", self.keyspace.full_key(key)),))
        return int(found) > 0

    def get_many(self, keys: Iterable[str]) -> Plan[dict[str, Any]]:
        wanted = check_keys(keys)
        if not wanted:
            return {}
        full = [self.keyspace.prefix + key for key in wanted]
        replies = yield Commands(tuple(("MGET", *chunk) for chunk in _chunks(full)))
        values = [value for reply in replies for value in reply]
        return {key: decode_stored(value) for key, value in zip(wanted, values) if value is not None}

    def set_many(self, items: Mapping[str, Any], ttl: float | None) -> Plan[None]:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        milliseconds = ttl_milliseconds(ttl)
        commands = tuple(
            self._set_command(self.keyspace.full_key(key), value, milliseconds) for key, value in items.items()
        )
        if commands:
            yield Commands(commands, atomic=True)

    def delete_many(self, keys: Iterable[str]) -> Plan[int]:
        doomed = check_keys(keys)
        if not doomed:
            return 0
        full = [self.keyspace.prefix + key for key in doomed]
        replies = yield Commands(tuple(("DEL", *chunk) for chunk in _chunks(full)))
        return sum(int(reply) for reply in replies)

    def _walk(self, pattern: str, *, unlink: bool) -> Generator[Request, Any, tuple[list[bytes | str], int]]:
        """Walk the keys matching ``pattern`` with SCAN (never KEYS, which blocks the server). Returns the
        keys found; with ``unlink``, UNLINKs each page as it comes instead and returns how many it removed."""
        found: list[bytes | str] = []
        removed = 0
        cursor = 0
        while True:
            (reply,) = yield Commands((("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT),))
            cursor, page = _scan_reply(reply)
            if unlink and page:
                (unlinked,) = yield Commands((("UNLINK", *page),))
                removed += int(unlinked)  # keys that expired meanwhile are not counted
            elif not unlink:
                found += page
            if cursor == 0:
                return found, removed

    def keys(self, pattern: str | None, prefix: str | None) -> Plan[list[str]]:
        if pattern is not None:
            _utf8(pattern, "key pattern")
        if prefix is not None:
            _utf8(prefix, "key prefix")
        # The server narrows by the longest prefix every match must have; the glob itself is then
        # checked with the one shared definition, key_matches, so this store agrees with the others.
        scan = self.keyspace.scan_pattern(scan_prefix(pattern, prefix))
        raw_keys, _ = yield from self._walk(scan, unlink=False)
        found = {self.keyspace.user_key(raw) for raw in raw_keys}  # SCAN may return a key twice
        return sorted(key for key in found if key_matches(key, pattern, prefix))

    def ttl(self, key: str) -> Plan[float | None]:
        (milliseconds,) = yield Commands((("PTTL", self.keyspace.full_key(key)),))
        milliseconds = int(milliseconds)
        return None if milliseconds < 0 else milliseconds / 1000  # -2: missing, -1: no TTL

    def expire(self, key: str, ttl: float | None) -> Plan[bool]:
        milliseconds = ttl_milliseconds(ttl)
        full_key = self.keyspace.full_key(key)
        if milliseconds is not None:
            (updated,) = yield Commands((("PEXPIRE", full_key, milliseconds),))
            return bool(updated)
        # PERSIST says 0 both for a missing key and for one without a TTL; EXISTS tells them apart.
        existed, _ = yield Commands((("EXISTS", full_key), ("PERSIST", full_key)), atomic=True)
        return int(existed) > 0

    def increment(self, key: str, amount: int | float) -> Plan[int | float]:
        full_key = self.keyspace.full_key(key)
        reply = yield ScriptCall(keys=(full_key,), args=(amount_text(amount),))
        status = int(reply[0])
        if status == 1:
            result: int | float = decode_stored(reply[1])
            return result
        if status == 0:
            current = decode_stored(reply[1])
            raise ValidationError(
                f"cannot increment state key {key!r}: its value is a {type(current).__name__}, not a number"
            )
        raise ValidationError(f"cannot increment state key {key!r} by {amount!r}: the result overflows a float")

    def clear(self) -> Plan[int]:
        """SCAN this namespace's prefix and UNLINK page by page (never FLUSHDB)."""
        _, removed = yield from self._walk(self.keyspace.scan_pattern(), unlink=True)
        return removed


def drive(plan: Plan[T], execute: Callable[[Request], Any]) -> T:
    """Run a plan, sending each request with a blocking ``execute``."""
    reply: Any = None
    try:
        while True:
            try:
                request = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = execute(request)
    finally:
        plan.close()


async def drive_async(plan: Plan[T], execute: Callable[[Request], Awaitable[Any]]) -> T:
    """Run a plan, sending each request with an awaitable ``execute``."""
    reply: Any = None
    try:
        while True:
            try:
                request = plan.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = await execute(request)
    finally:
        plan.close()


# -- the two flavours of store over the plans ------------------------------------------------------------


class PlannedStateStore(StateStore):
    """A sync state store whose operations are :class:`StatePlans`; subclasses say how to run one."""

    plans: StatePlans

    @property
    def namespace(self) -> str:
        return self.plans.keyspace.namespace

    def _run(self, plan: Plan[T]) -> T:
        raise NotImplementedError

    def get(self, key: str, default: Any = None) -> Any:
        return self._run(self.plans.get(key, default))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._run(self.plans.set(key, value, ttl))

    def delete(self, key: str) -> bool:
        return self._run(self.plans.delete(key))

    def exists(self, key: str) -> bool:
        return self._run(self.plans.exists(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._run(self.plans.get_many(keys))

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        self._run(self.plans.set_many(items, ttl))

    def delete_many(self, keys: Iterable[str]) -> int:
        return self._run(self.plans.delete_many(keys))

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        return self._run(self.plans.keys(pattern, prefix))

    def ttl(self, key: str) -> float | None:
        return self._run(self.plans.ttl(key))

    def expire(self, key: str, ttl: float | None) -> bool:
        return self._run(self.plans.expire(key, ttl))

    def increment(self, key: str, amount: int | float = 1) -> int | float:
        return self._run(self.plans.increment(key, amount))

    def clear(self) -> int:
        return self._run(self.plans.clear())


class AsyncPlannedStateStore(AsyncStateStore):
    """An async state store whose operations are :class:`StatePlans`; subclasses say how to run one."""

    plans: StatePlans

    @property
    def namespace(self) -> str:
        return self.plans.keyspace.namespace

    async def _run(self, plan: Plan[T]) -> T:
        raise NotImplementedError

    async def get(self, key: str, default: Any = None) -> Any:
        return await self._run(self.plans.get(key, default))

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self._run(self.plans.set(key, value, ttl))

    async def delete(self, key: str) -> bool:
        return await self._run(self.plans.delete(key))

    async def exists(self, key: str) -> bool:
        return await self._run(self.plans.exists(key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return await self._run(self.plans.get_many(keys))

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        await self._run(self.plans.set_many(items, ttl))

    async def delete_many(self, keys: Iterable[str]) -> int:
        return await self._run(self.plans.delete_many(keys))

    async def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        return await self._run(self.plans.keys(pattern, prefix))

    async def ttl(self, key: str) -> float | None:
        return await self._run(self.plans.ttl(key))

    async def expire(self, key: str, ttl: float | None) -> bool:
        return await self._run(self.plans.expire(key, ttl))

    async def increment(self, key: str, amount: int | float = 1) -> int | float:
        return await self._run(self.plans.increment(key, amount))

    async def clear(self) -> int:
        return await self._run(self.plans.clear())


__all__ = [
    "CHUNK",
    "INCREMENT_SCRIPT",
    "ROOT",
    "SCAN_COUNT",
    "AsyncPlannedStateStore",
    "BinaryCodec",
    "Commands",
    "Keyspace",
    "LuaScript",
    "Plan",
    "PlannedStateStore",
    "Request",
    "ScriptCall",
    "StatePlans",
    "TextCodec",
    "ValueCodec",
    "amount_text",
    "decode_stored",
    "drive",
    "drive_async",
    "escape_glob",
    "ttl_milliseconds",
]
