"""Make every library used by the PII scanner strictly offline.

Must be imported before anything from presidio / tldextract. tldextract reads
``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` when its module-level default extractor
is constructed (at import time); an empty value means "never fetch, use the
bundled public-suffix snapshot".  Our own e-mail recognizer additionally uses a
private extractor constructed with ``suffix_list_urls=()`` and no cache dir, so
it stays offline even if someone imported tldextract earlier.
"""

from __future__ import annotations

import os

os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""
# spaCy / HF must never try to download anything on our behalf.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
