"""The client a request counts as (web/clientaddr.py): the peer, or the address the outermost of N trusted
proxies saw in X-Forwarded-For; IPv6 clients by /64. tests/http/test_lockout.py checks it through requests."""

import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import plain_id
from token_exchange.web.clientaddr import IPV6_CLIENT_PREFIX, client_address, client_of_address


@pytest.mark.parametrize(
    "text,client",
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7 ", "192.0.2.7"),
        ("192.0.2.7:443", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::9]:443", "2001:db8:1:2::/64"),
        ("\t[2001:db8::9]:443 ", "2001:db8::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client in IPv6 clothing is that IPv4 client
        ("[::ffff:192.0.2.7]:80", "192.0.2.7"),
        # The first "]" closes the address; what follows it, the port's place, is never read.
        ("[2001:db8:1:2::9]:443]", "2001:db8:1:2::/64"),
    ],
)
def test_an_address_names_its_client(text, client):
    assert client_of_address(text) == client


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "unknown",
        "192.0.2",
        "192.0.2.256",
        "192.0.2.7.8",
        "192.0.2.7:443:1",
        "[2001:db8::1",
        "2001:db8::1]",
        "[]",
        "2001:db8::1::2",
        "2001:db8::g",
        "example.org",
        "192.0.2.7/32",
        "١٩٢.0.2.7",  # other scripts' digits
    ],
    ids=plain_id,
)
def test_anything_else_names_no_client(text):
    assert client_of_address(text) is None


def test_an_ipv6_client_is_its_64():
    assert IPV6_CLIENT_PREFIX == 64
    same = {client_of_address(f"2001:db8:aaaa:bbbb:{n:x}::1") for n in range(0, 0x10000, 0x1111)}
    assert same == {"2001:db8:aaaa:bbbb::/64"}
    # The neighbouring /64s on either side are other clients.
    assert client_of_address("2001:db8:aaaa:bbba:ffff:ffff:ffff:ffff") == "2001:db8:aaaa:bbba::/64"
    assert client_of_address("2001:db8:aaaa:bbbc::") == "2001:db8:aaaa:bbbc::/64"


PEER = "10.0.0.1"


@pytest.mark.parametrize("forwarded_for", ["", "192.0.2.7", "192.0.2.7, 198.51.100.1", "garbage", ",,,"])
def test_without_trusted_proxies_the_header_is_never_read(forwarded_for):
    assert client_address(PEER, forwarded_for, 0) == PEER


@pytest.mark.parametrize(
    "forwarded_for,trusted_proxies,client",
    [
        ("192.0.2.7", 1, "192.0.2.7"),
        ("192.0.2.7, 198.51.100.1", 1, "198.51.100.1"),  # what the client wrote itself stays to the left
        ("192.0.2.7,198.51.100.1", 2, "192.0.2.7"),
        ("203.0.113.5, 192.0.2.7, 198.51.100.1", 2, "192.0.2.7"),
        ("203.0.113.5, 192.0.2.7, 198.51.100.1", 3, "203.0.113.5"),
        ("a, b, 192.0.2.7:5555, 198.51.100.1", 2, "192.0.2.7"),
        ("x,[2001:db8::7]:443", 1, "2001:db8::/64"),
        # Several headers arrive joined with commas, in order: the last entry of the last one is the rightmost.
        ("192.0.2.7, 198.51.100.1,203.0.113.9", 1, "203.0.113.9"),
    ],
)
def test_behind_n_proxies_the_nth_entry_from_the_right_is_the_client(forwarded_for, trusted_proxies, client):
    assert client_address(PEER, forwarded_for, trusted_proxies) == client


@pytest.mark.parametrize(
    "forwarded_for,trusted_proxies",
    [
        ("", 1),  # no header
        ("", 2),
        ("192.0.2.7", 2),  # fewer entries than proxies
        ("192.0.2.7, 198.51.100.1", 3),
        ("unknown", 1),  # that entry is no address
        ("192.0.2.7, garbage", 1),
        ("192.0.2.7, ", 1),
        ("192.0.2.7,,198.51.100.1", 2),
        ("192.0.2.7 198.51.100.1", 1),
    ],
)
def test_without_a_usable_entry_the_peer_is_the_client(forwarded_for, trusted_proxies):
    assert client_address(PEER, forwarded_for, trusted_proxies) == PEER


def test_an_ipv6_peer_is_its_64_and_a_peer_that_is_no_address_is_itself():
    assert client_address("2001:db8::5", "", 0) == "2001:db8::/64"
    assert client_address("2001:db8::5", "192.0.2.7", 0) == "2001:db8::/64"
    assert client_address("not-an-address", "", 0) == "not-an-address"
    assert client_address("not-an-address", "garbage", 1) == "not-an-address"


def test_a_long_header_is_read_from_the_right_only():
    forwarded_for = ", ".join(["garbage"] * 20_000 + ["192.0.2.7", "198.51.100.1"])
    assert client_address(PEER, forwarded_for, 2) == "192.0.2.7"
    assert client_address(PEER, "," * 60_000, 2) == PEER


def test_the_entries_left_of_the_one_read_are_never_split_apart():
    # Only a change in cost shows this: split into all its entries, a header of 20,000 short ones would make
    # 20,000 strings and a list of them (about 15 times the header's size) where one copy of it suffices.
    forwarded_for = ", ".join(["ab"] * 20_000 + ["192.0.2.7", "198.51.100.1"])
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        client = client_address(PEER, forwarded_for, 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert client == "192.0.2.7"
    assert peak - before < 2 * len(forwarded_for), f"{peak - before} bytes for a {len(forwarded_for)}-byte header"


@settings(max_examples=300, deadline=None)
@given(
    peer=st.sampled_from(["10.0.0.1", "2001:db8::1"]),
    forwarded_for=st.text(st.characters(exclude_categories=()), max_size=80)
    | st.lists(st.sampled_from(["192.0.2.7", "[2001:db8::9]:1", " ", "", "x", ":", "[", "]", "::"]), max_size=6).map(
        ",".join
    ),
    trusted_proxies=st.integers(0, 4),
)
def test_any_header_names_a_client_that_is_an_address_and_never_raises(peer, forwarded_for, trusted_proxies):
    client = client_address(peer, forwarded_for, trusted_proxies)
    # Always an address the code made (canonical text), never the header's own text.
    assert client_of_address(client.removesuffix("/64")) == client
    if trusted_proxies == 0:
        assert client == client_of_address(peer)
