"""Backend adapters, one package per engine family (installed as storebridge.adapters.<family>)."""
