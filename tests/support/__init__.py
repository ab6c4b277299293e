"""What the tests share, one module per kind of thing provided, each a pytest plugin
(``tests/conftest.py`` lists them): real data and the CPU's variants (:mod:`.data`), the real
CLI in a child process (:mod:`.cli`), submissions written for a test (:mod:`.submissions`),
``python app.py`` (:mod:`.app`) and Chromium driven by Playwright (:mod:`.browser`)."""
