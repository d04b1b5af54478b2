# The generated API reference.
#
#   make docs        LDoc (Debian's lua-ldoc, lua-markdown) from the doc comments: build/docs/index.html
#   make docs-check  fails when a public function or value has no doc comment, or when README's
#                    errors table is not the one lua/dws/codes.lua generates (CI; about a second)
#
# config.ld lists the modules and writes to build/docs (its `dir`); docs/surface.lua names the
# internal modules and the classes.

.PHONY: docs docs-check

docs:
	@sh scripts/deps.sh
	rm -rf build/docs
	@# Debian's ldoc runs under Lua 5.1: LUA_PATH/LUA_CPATH set for Lua 5.4 would hide its own modules
	@# (pl.path requires LuaFileSystem). It reads our sources as text, so it needs neither.
	env -u LUA_PATH -u LUA_CPATH ldoc --fatalwarnings .

docs-check: $(BUILD)/5.4/dws/core.so
	@sh scripts/deps.sh
	@LUA_PATH="$(LUA_PATH_DEV)" LUA_CPATH="$(CURDIR)/$(BUILD)/5.4/?.so;;" lua5.4 scripts/docs_check.lua
	@LUA_PATH="$(LUA_PATH_DEV)" lua5.4 scripts/errors_table.lua docs/calls.md
	@lua5.4 scripts/docs_links.lua
	@lua5.4 scripts/layout_check.lua
