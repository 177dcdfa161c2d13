"""Store URLs: parsing, rendering, and keeping secrets out of str/repr/errors."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from storebridge.errors import ConfigurationError
from storebridge.urls import MASK, StoreURL, mask_secrets, parse_url

# ---------------------------------------------------------------------------------------------------------
# Parsing


def test_sqlite_relative_path():
    url = parse_url("sqlite:///relative/path.db")
    assert url.scheme == "sqlite"
    assert url.driver is None
    assert url.host is None
    assert url.username is None and url.password is None
    assert url.file_path == "relative/path.db"


def test_sqlite_absolute_path():
    url = parse_url("sqlite:////abs/path.db")
    assert url.file_path == "/abs/path.db"


def test_sqlite_memory():
    url = parse_url("sqlite:///:memory:")
    assert url.file_path == ":memory:"
    assert url.host is None


def test_sqlite_path_with_encoded_space():
    assert parse_url("sqlite:///my%20dir/app.db").file_path == "my dir/app.db"


def test_postgresql_full():
    url = parse_url("postgresql://alice:s3cret@db.example.com:6543/appdb?sslmode=require&application_name=x")
    assert url.scheme == "postgresql"
    assert url.driver is None
    assert url.username == "alice"
    assert url.password == "s3cret"
    assert url.host == "db.example.com"
    assert url.port == 6543
    assert url.database == "appdb"
    assert url.query == {"sslmode": "require", "application_name": "x"}


def test_postgresql_without_port_or_password():
    url = parse_url("postgresql://alice@localhost/appdb")
    assert url.username == "alice"
    assert url.password is None
    assert url.port is None
    assert url.database == "appdb"


def test_no_database():
    assert parse_url("redis://localhost:6379").database is None
    assert parse_url("memory://").database is None


@pytest.mark.parametrize(
    ("text", "scheme", "driver"),
    [
        ("postgresql+asyncpg://u@h/db", "postgresql", "asyncpg"),
        ("postgresql+psycopg://u@h/db", "postgresql", "psycopg"),
        ("mysql+aiomysql://u@h/db", "mysql", "aiomysql"),
        ("SQLite+AioSQLite:///x.db", "sqlite", "aiosqlite"),
    ],
)
def test_driver_in_scheme(text, scheme, driver):
    url = parse_url(text)
    assert url.scheme == scheme
    assert url.driver == driver
    assert url.full_scheme == f"{scheme}+{driver}"


def test_full_scheme_without_driver():
    assert parse_url("memory://").full_scheme == "memory"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("postgresql://u:p@[::1]:5432/db", "::1", 5432),
        ("postgresql://u:p@[2001:db8::7]/db", "2001:db8::7", None),
        ("redis://[fe80::1]:6380", "fe80::1", 6380),
    ],
)
def test_ipv6_hosts(text, host, port):
    url = parse_url(text)
    assert url.host == host
    assert url.port == port
    assert f"[{host}]" in url.render()
    assert parse_url(url.render(reveal=True)) == url


@pytest.mark.parametrize("password", ["p@ss", "p:ss", "p/ss", "a@b:c/d?e#f%g h+i&j", "ünï©ødé"])
def test_percent_encoded_passwords(password):
    url = parse_url(f"postgresql://bob:{quote(password, safe='')}@host:5432/db")
    assert url.password == password
    assert url.username == "bob"
    assert url.host == "host"
    assert url.port == 5432
    assert url.database == "db"


def test_percent_encoded_username():
    url = parse_url("postgresql://b%40b%3Ax:pw@host/db")
    assert url.username == "b@b:x"
    assert url.password == "pw"


def test_json_directory_url():
    assert parse_url("json:///path/to/dir").file_path == "path/to/dir"


def test_parse_url_passes_a_store_url_through():
    url = parse_url("memory://")
    assert parse_url(url) is url


# ---------------------------------------------------------------------------------------------------------
# Secrets never shown

SECRET_URLS = [
    ("postgresql://alice:hunter2xyz@db:5432/app", ["hunter2xyz"]),
    ("postgresql+asyncpg://alice:hunter2xyz@[::1]/app?sslmode=require", ["hunter2xyz"]),
    (f"postgresql://alice:{quote('p@ss:w/rd', safe='')}@db/app", ["p@ss:w/rd", quote("p@ss:w/rd", safe="")]),
    ("redis://:onlypasswordxyz@cache:6379/0", ["onlypasswordxyz"]),
    ("qdrant://host:6333?api_key=KEYabc123", ["KEYabc123"]),
    ("libsql://db.turso.io?authToken=TOKabc123", ["TOKabc123"]),
    ("upstash://x.upstash.io?token=TOKxyz789&other=visible", ["TOKxyz789"]),
    ("weaviate://h?API_KEY=UPPERsecret1", ["UPPERsecret1"]),
    ("pg://u:pw1234567@h/d?password=QPASS999&access_token=ACC111&client_secret=CS222", [
        "pw1234567", "QPASS999", "ACC111", "CS222",
    ]),
    ("azure://acct?sig=SIGvalue42&sas=SASvalue42&credentials=CREDvalue42", ["SIGvalue42", "SASvalue42", "CREDvalue42"]),
]


@pytest.mark.parametrize(("text", "secrets"), SECRET_URLS)
def test_str_repr_render_hide_secrets(text, secrets):
    url = parse_url(text)
    shown = [str(url), repr(url), url.render(), f"{url}", f"{url!r}", repr([url]), repr({"u": url})]
    for out in shown:
        for secret in secrets:
            assert secret not in out, out
    assert MASK in url.render()


def test_non_secret_query_values_stay_visible():
    url = parse_url("upstash://x.upstash.io?token=TOKxyz789&other=visible")
    assert "other=visible" in str(url)
    assert url.query["token"] == "TOKxyz789"


def test_username_and_host_stay_visible():
    url = parse_url("postgresql://alice:hunter2xyz@db.example.com:5432/app")
    assert str(url) == f"postgresql://alice:{MASK}@db.example.com:5432/app"
    assert repr(url) == f"StoreURL('postgresql://alice:{MASK}@db.example.com:5432/app')"


@pytest.mark.parametrize(("text", "secrets"), SECRET_URLS)
def test_render_reveal_round_trips(text, secrets):
    url = parse_url(text)
    revealed = url.render(reveal=True)
    assert parse_url(revealed) == url
    assert url.secrets()  # reveal is the only way to see them
    for secret in url.secrets():
        assert secret not in url.render()


@pytest.mark.parametrize(
    "text",
    [
        "sqlite:///relative/path.db",
        "sqlite:////abs/path.db",
        "sqlite:///:memory:",
        "sqlite:///my%20dir/a%25b.db",
        "memory://",
        "json:///data/dir",
        "postgresql://alice@localhost/appdb",
        "postgresql://alice:s3cret@db.example.com:6543/appdb?sslmode=require&application_name=my%20app",
        "postgresql+asyncpg://u:p@[::1]:5432/db",
        "redis://:pw@cache:6379/0",
        "mongodb://u:p@h/db?authSource=admin&tls=true",
        "x://h/p?q=a%26b%3Dc&token=t%2Bo%20k",
    ],
)
def test_reveal_round_trip(text):
    url = parse_url(text)
    assert parse_url(url.render(reveal=True)) == url
    assert parse_url(str(url)).host == url.host


def test_render_with_another_scheme():
    url = parse_url("postgresql+asyncpg://u:pw@h/db")
    assert url.render(reveal=True, scheme="postgresql") == "postgresql://u:pw@h/db"
    assert url.render(scheme="postgres") == f"postgres://u:{MASK}@h/db"


def test_secrets_lists_password_and_secret_query_values():
    url = parse_url("pg://u:pw@h/d?token=T1&sslmode=require&api_key=K2")
    assert sorted(url.secrets()) == sorted(["pw", "T1", "K2"])
    assert parse_url("sqlite:///x.db").secrets() == []


def test_store_url_is_frozen():
    url = parse_url("memory://")
    with pytest.raises(AttributeError):
        url.host = "x"  # type: ignore[misc]


def test_store_url_constructed_directly_masks_too():
    url = StoreURL(scheme="pg", username="u", password="direct-secret", host="h")
    assert "direct-secret" not in str(url) and "direct-secret" not in repr(url)
    assert url.render(reveal=True) == "pg://u:direct-secret@h"


# ---------------------------------------------------------------------------------------------------------
# mask_secrets on free text


def test_mask_driver_error_with_dsn():
    text = (
        'connection to server failed: could not connect using "postgresql://app:Sup3rS3cret@10.0.0.5:5432/prod"'
        " (timeout)"
    )
    out = mask_secrets(text)
    assert "Sup3rS3cret" not in out
    assert "postgresql://app:***@10.0.0.5:5432/prod" in out
    assert "(timeout)" in out


def test_mask_dsn_with_driver_scheme_and_encoded_password():
    out = mask_secrets(f"failed: mysql+aiomysql://root:{quote('p@s:s/w', safe='')}@db/x")
    assert quote("p@s:s/w", safe="") not in out
    assert "mysql+aiomysql://root:***@db/x" in out


def test_mask_several_dsns_in_one_text():
    out = mask_secrets("a=postgresql://u:ONE1@h1/d b=redis://:TWO2@h2:6379")
    assert "ONE1" not in out and "TWO2" not in out
    assert "h1" in out and "h2" in out


@pytest.mark.parametrize(
    "text",
    [
        "host=db user=app password=hunter2xyz dbname=prod",
        "host=db user=app PASSWORD = hunter2xyz dbname=prod",
        "host=db password='hunter2xyz' dbname=prod",
        'host=db pwd="hunter2xyz" dbname=prod',
        "passwd=hunter2xyz",
    ],
)
def test_mask_password_pairs(text):
    out = mask_secrets(text)
    assert "hunter2xyz" not in out
    assert "dbname=prod" in out or "passwd" in out
    assert MASK in out


def test_mask_quoted_password_with_spaces():
    out = mask_secrets("host=db password='correct horse battery' dbname=prod")
    for word in ("correct", "horse", "battery"):
        assert word not in out
    assert "dbname=prod" in out


@pytest.mark.parametrize(
    "text",
    [
        "GET https://api.example.com/v1?token=TOKabc123 failed",
        "GET https://api.example.com/v1?x=1&api_key=TOKabc123 failed",
        "GET https://api.example.com/v1?x=1&Api_Key=TOKabc123&y=2 failed",
        "upstash://h?access_token=TOKabc123",
        "azure blob: https://acct.blob.core.windows.net/c?sv=2020&sig=TOKabc123",
    ],
)
def test_mask_query_secrets(text):
    out = mask_secrets(text)
    assert "TOKabc123" not in out
    assert MASK in out


def test_mask_keeps_non_secret_query_params():
    out = mask_secrets("https://h/p?sslmode=require&token=T0KEN42&x=1")
    assert "sslmode=require" in out and "x=1" in out and "T0KEN42" not in out


def test_mask_extra_secrets():
    out = mask_secrets("server said: bad credentials for key abcXYZ987 (user bob)", "abcXYZ987", None, "")
    assert "abcXYZ987" not in out
    assert "user bob" in out


def test_mask_extra_secret_anywhere():
    assert mask_secrets("x-tok-x", "tok") == f"x-{MASK}-x"


def test_mask_leaves_plain_text_alone():
    text = "could not connect to server: Connection refused (host db, port 5432); see user@example.com"
    assert mask_secrets(text) == text


def test_mask_accepts_non_strings():
    assert "PW9" not in mask_secrets(ValueError("postgresql://u:PW9@h/d"))


# ---------------------------------------------------------------------------------------------------------
# Malformed URLs


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://alice:Sup3rS3cret@host:notaport/db",
        "postgresql://alice:Sup3rS3cret@host:99999/db",
        "postgresql://alice:Sup3rS3cret@[::1/db",
        "postgresql:/alice:Sup3rS3cret@host/db",
        "alice:Sup3rS3cret@host/db",
        "//alice:Sup3rS3cret@host/db",
        "postgresql//alice:Sup3rS3cret@host/db",
        "postgresql://alice:Sup3r/S3cret@host/db",
        "postgresql://alice:Sup3r\uff0fS3cret@host/db",  # NFKC turns it into '/': urlsplit echoes the netloc
    ],
)
def test_malformed_urls_raise_without_the_password(text):
    with pytest.raises(ConfigurationError) as info:
        parse_url(text)
    message = str(info.value)
    assert "Sup3rS3cret" not in message
    assert "Sup3r" not in message and "S3cret" not in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", ["", "no scheme here", "://x", "1abc://x", None, 42, b"sqlite:///x"])
def test_not_a_url(value):
    with pytest.raises(ConfigurationError):
        parse_url(value)  # type: ignore[arg-type]


def test_malformed_url_message_helps():
    with pytest.raises(ConfigurationError, match="scheme://"):
        parse_url("app.db")
