"""File formats: tensordb's trees to and from files other tools read, on the public API alone.

``tensordb.io.jsonbin`` is the JSON+binref format (a JSON file whose arrays
are inline base64 or pointers into a raw ``.bin`` file beside it).
"""
