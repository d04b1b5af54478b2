-- The bind-card workflow: check the card locally, consult the addable payment methods, cache
-- the card, add it. The card number and security code go to cacheCard and nowhere else: not
-- into the outcome, an error or a log line.
local core = require "dws.core"
local card = require "dws.card"
local errors = require "dws.errors"
local journal = require "dws.journal"
local api = require "dws.api"
local validate = require "dws.validate"
local is_object = validate.is_object

local M = {}

-- paymentMethodType values that mean "a card may be added here".
M.CARD_OPTION_TYPES = { MIXEDCARD = true, CARD = true, DEBITCARD = true, CREDITCARD = true }

-- Stands in for cacheCard's temporary token while the addPaymentMethod request is checked before
-- anything is sent (any token the page allows validates alike).
local TOKEN_STAND_IN = "TOKEN"

local function card_invalid(message, field)
  return nil, errors.new{ api = "bindCard", status = "F", code = errors.CARD_INVALID, message = message,
                          field = field }
end

local function not_addable(message)
  return nil, errors.new{ api = "bindCard", status = "F", code = errors.PAYMENT_METHOD_NOT_ADDABLE,
                          message = message }
end

local function truthy(v)
  return v == true or v == "true"
end


-- The brands a card option supports, from its paymentOptionDetail (JSON in a string), as a
-- set and as a readable list; or nil, reason.
local function supported_brands(option)
  local raw = option.paymentOptionDetail
  if type(raw) ~= "string" then return nil, "it has no paymentOptionDetail" end
  local detail = core.json_decode(raw)
  if not is_object(detail) then return nil, "its paymentOptionDetail is not valid JSON" end
  if detail.type ~= nil and tostring(detail.type):lower() ~= "card" then
    return nil, "its paymentOptionDetail is not of type card"
  end
  local set, list = {}, {}
  local brands = is_object(detail.card) and detail.card.supportCardBrands
  if type(brands) == "table" then
    for _, b in ipairs(brands) do
      local name = type(b) == "table" and b.cardBrand or b
      if type(name) == "string" and not set[name:upper()] then
        set[name:upper()] = true
        list[#list + 1] = name:upper()
      end
    end
  end
  return set, list
end

-- Pick the card option that can take this brand, or explain exactly why none can.
function M.choose_option(options, brand)
  local seen, reasons = {}, {}
  for _, option in ipairs(type(options) == "table" and options or {}) do
    local kind = type(option) == "table" and (option.paymentMethodType or option.paymentMethodCategory)
    if type(kind) == "string" and M.CARD_OPTION_TYPES[kind:upper()] then
      seen[#seen + 1] = kind
      if not truthy(option.enabled) then
        reasons[#reasons + 1] = "the " .. kind .. " option is not enabled for this customer"
      else
        local set, list = supported_brands(option)
        if not set then
          reasons[#reasons + 1] = "the " .. kind .. " option cannot be used: " .. list
        elseif set[brand] then
          return option, list
        else
          reasons[#reasons + 1] = string.format("%s is not supported by the %s option (it supports %s)",
            brand, kind, #list > 0 and table.concat(list, ", ") or "no brands")
        end
      end
    end
  end
  if #seen == 0 then
    local others = {}
    for _, option in ipairs(type(options) == "table" and options or {}) do
      others[#others + 1] = tostring(type(option) == "table" and option.paymentMethodType or "?")
    end
    return nil, "no card option among the addable payment methods" ..
      (#others > 0 and " (" .. table.concat(others, ", ") .. ")" or "")
  end
  return nil, table.concat(reasons, "; ")
end

local function nonempty(t)
  return type(t) == "table" and next(t) ~= nil
end

local function string_or_nil(v)
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

-- A card option's answer for "the card we sent": cacheCard's mask must show our first six and
-- last four, its last4 our last four, its brand ours. A signed answer about another card (a
-- gateway bug, a mix-up of sessions) must never be bound and reported as this one.
function M.same_card(card_no, brand, cached_card)
  local mask = string_or_nil(cached_card.mask)
  if mask then
    local head, tail = mask:match("^(%d+)%*+(%d+)$")
    if not head or card_no:sub(1, #head) ~= head or card_no:sub(-#tail) ~= tail then
      return nil, "cacheCard answered a mask that is not this card's"
    end
  end
  local last4 = string_or_nil(cached_card.last4)
  if last4 and last4 ~= card_no:sub(-4) then return nil, "cacheCard answered a last4 that is not this card's" end
  local their_brand = string_or_nil(cached_card.brand)
  if their_brand and brand and their_brand:upper() ~= brand:upper() then
    return nil, "cacheCard answered another brand (" .. their_brand .. ")"
  end
  return true
end

-- The outcome a caller sees for a journal record (the journal owns the record's shape).
M.outcome_of = journal.outcome

-- A journal call's failure as an error object: the store could not answer (U, try later), or the
-- record under this requestId is damaged (F: no retry mends it; someone must look).
local function journal_error(request_id, err, what, kind)
  if kind == journal.DAMAGED then
    return errors.new{ api = "bindCard", code = errors.BINDING_DAMAGED, status = "F", request_id = request_id,
                       message = tostring(err) }
  end
  return errors.new{ api = "bindCard", code = errors.JOURNAL_UNAVAILABLE, status = "U", request_id = request_id,
                     message = what .. ": " .. tostring(err) }
end

-- Answer codes that mean the temporary token is gone: the card must be entered again.
M.TOKEN_GONE = { [errors.INVALID_PAYMENTMETHOD_TOKEN] = true }

-- Send the journaled bytes of `rec` and record the answer. -> outcome | nil, err
local function send_recorded(p, j, rec, resuming)
  local id = rec.requestId
  local sent, jerr, kind = j:transition(id, "send", "SENT", function(r) r.sends = (r.sends or 0) + 1 end)
  if not sent then
    -- Not sent: the record stays as it was (NEW or UNKNOWN), so a resume can still finish it.
    return nil, journal_error(id, jerr or "record vanished", "binding not sent: the journal could not record it",
      kind)
  end
  if sent.state ~= "SENT" then return M.outcome_of(sent) end -- finished meanwhile (notification)

  local res, n_or_err = p:send(p:entry("addPaymentMethod", 2), sent.body, id)
  local to, edit, err
  if res then
    local action = nonempty(res.actionForm)
    to = action and "ACTION_REQUIRED" or "ACCEPTED"
    edit = function(r)
      r.attempts = (r.attempts or 0) + n_or_err
      r.resultStatus, r.resultCode, r.resultMessage = "S", res.result.resultCode, res.result.resultMessage
      r.expiryTime = string_or_nil(res.expiryTime) or r.expiryTime
      r.actionForm = action and res.actionForm or nil
      r.redirectUrl = string_or_nil(res.redirectUrl)
        or (is_object(res.actionForm) and string_or_nil(res.actionForm.redirectUrl)) or nil
    end
  else
    err = n_or_err
    if err.status == "F" and resuming and err.code == errors.REPEAT_REQ_INCONSISTENT then
      -- We re-sent the journaled bytes and DWS says they differ: our bug, never the customer's.
      -- The first request may still have bound the card, so the record stays UNKNOWN.
      p:log("error", "resume_binding: DWS answered REPEAT_REQ_INCONSISTENT to the journaled bytes",
        { requestId = id, sends = sent.sends })
      local cause = err
      err = errors.new{ api = "addPaymentMethod", code = errors.RESUME_INCONSISTENT, request_id = id,
        attempts = cause.attempts, response = cause.response,
        message = "DWS answered REPEAT_REQ_INCONSISTENT to a resend of the journaled bytes (a bug in the SDK or "
          .. "the journal's store; the binding's outcome is still unknown)" }
      err.cause = cause
      to = "UNKNOWN"
    elseif err.status == "F" and err.code == errors.REPEAT_REQ_INCONSISTENT then
      -- A first send, and DWS says another request owns this requestId (one sent before this
      -- journal knew it: another system, a lost journal). That request may still bind a card, and
      -- its notification will come: nothing final can be said until then.
      p:log("warn", "bind_card: an earlier request owns this requestId at DWS; waiting for its notification",
        { requestId = id })
      to = "CONFLICT"
      err.message = err.message .. " (an earlier request with this requestId exists at DWS; its notification "
        .. "decides the binding)"
    elseif err.status == "F" then
      to = "FAILED"
      if M.TOKEN_GONE[err.code] then
        err.reenter_card = true
        err.message = err.message .. " (the temporary card token has expired: the card must be entered again)"
      end
    else
      to = "UNKNOWN"
    end
    edit = function(r)
      r.attempts = (r.attempts or 0) + (err.attempts or 0)
      r.resultStatus, r.resultCode, r.resultMessage = err.status, err.code, err.message
    end
  end

  local after
  after, jerr = j:transition(id, "answer", to, edit)
  if not after then
    -- DWS answered but the record could not be updated: it stays SENT and will be found by
    -- pending_bindings; a resume re-sends the same bytes and gets the same answer.
    p:log("error", "bind_card: the journal could not record the answer", { requestId = id,
      state = to, error = tostring(jerr) })
    after = sent
    after.state = to
  end
  if (to == "FAILED" or to == "CONFLICT") and after.state == to then
    err.binding = M.outcome_of(after)
    return nil, err
  end
  local outcome = M.outcome_of(after)
  if to == "UNKNOWN" and after.state == "UNKNOWN" then
    if err.code == errors.RESUME_INCONSISTENT then return nil, err end
    outcome.error = err
  end
  p:log("info", "bind_card: " .. outcome.status, { requestId = id, mask = outcome.mask })
  return outcome
end

-- bind(pipeline, journal, params) -> outcome | nil, err
function M.bind(p, j, params)
  if type(params) ~= "table" then error("dws bind_card: params must be a table", 2) end
  if type(params.card) ~= "table" then return card_invalid("card is required (a table)", "card") end

  local c, cerr = card.check(params.card)
  if not c then
    cerr.api = "bindCard"
    return nil, cerr
  end
  local mask, last4, brand = card.mask(c.cardNo), card.last4(c.cardNo), c.brand

  -- Every check that needs no network runs before the first byte is sent: the three requests are
  -- validated as they will go out (addPaymentMethod with a stand-in for the token cacheCard will
  -- give), so no card is tokenised for a binding whose request cannot be sent.
  local consult = { customerId = params.customerId, env = params.env, scenes = params.scenes }
  local cache_request = { paymentMethodDetail = { paymentMethodDetailType = "card", card = c } }
  local add = {
    requestId = params.requestId == nil and core.uuid4() or params.requestId,
    customerId = params.customerId,
    referenceCustomerId = params.referenceCustomerId,
    referenceUserId = params.referenceUserId,
    isTemporary = params.isTemporary,
    env = params.env,
    redirectUrl = params.redirectUrl,
    paymentMethodDetail = { paymentMethodDetailType = "CARD", card = { cardToken = TOKEN_STAND_IN,
      paymentMethodDetailMetadata = params.paymentMethodDetailMetadata } },
  }
  local checked = {}
  for i, check in ipairs{ { api.consultAddablePaymentMethod, consult }, { api.cacheCard, cache_request },
                          { api.addPaymentMethod, add } } do
    local ok, verr = validate.request(check[1], check[2])
    if not ok then
      verr.request_id = check[1] == api.addPaymentMethod and validate.plain_id(params.requestId) or nil
      p:log("error", "bind_card: nothing sent: " .. verr.message, { api = check[1].name, field = verr.field })
      return nil, verr
    end
    checked[i] = ok
  end
  add.requestId = checked[3].requestId -- as validation normalised it (a number becomes its digits)
  local request_id = add.requestId
  p:log("info", "bind_card: card checked locally", { mask = mask, brand = brand })

  if params.requestId ~= nil then
    local known, jerr, kind = j:get(request_id)
    if jerr then return nil, journal_error(request_id, jerr, "cannot check the requestId", kind) end
    if known then
      return nil, errors.new{ api = "bindCard", code = errors.REQUEST_ID_REUSED, request_id = request_id,
        message = "requestId is already in the binding journal (" .. known.state .. "); use resume_binding" }
    end
  end

  local options, err = p:call(p:entry("consultAddablePaymentMethod", 2), consult)
  if not options then return nil, err end
  local option, detail = M.choose_option(options.paymentOptions, brand)
  if not option then return not_addable(detail) end
  p:log("info", "bind_card: addable card option found",
    { paymentMethodType = option.paymentMethodType, brands = table.concat(detail, ",") })

  local cached
  cached, err = p:call(p:entry("cacheCard", 2), cache_request)
  local card_no = c.cardNo
  -- Our copy of the clear card is done with (the caller's table is theirs to clear).
  c.cardNo, c.securityCode = nil, nil
  if not cached then return nil, err end
  local cached_card = is_object(cached.paymentMethodDetail) and is_object(cached.paymentMethodDetail.card)
    and cached.paymentMethodDetail.card or {}
  local same, mismatch = M.same_card(card_no, brand, cached_card)
  if not same then
    p:log("error", "bind_card: " .. mismatch, { mask = mask })
    return nil, errors.new{ api = "cacheCard", code = errors.CARD_MISMATCH,
                            message = mismatch .. "; nothing was added" }
  end
  local temp_token = string_or_nil(cached_card.cardToken)
  if not temp_token then
    return nil, errors.new{ api = "cacheCard", code = errors.RESPONSE_MALFORMED, status = "U",
                            message = "cacheCard answered S without a cardToken" }
  end
  -- DWS's own mask (now known to be this card's) is preferred.
  mask = string_or_nil(cached_card.mask) or mask
  brand = string_or_nil(cached_card.brand) or brand
  p:log("info", "bind_card: card cached", { mask = mask, expiryTime = cached.expiryTime })

  add.paymentMethodDetail.card.cardToken = temp_token
  local body, id_or_err = p:encode(p:entry("addPaymentMethod", 2), add)
  if not body then return nil, id_or_err end

  -- Journaled before it is sent: whatever happens next, the bytes can be sent again.
  local rec = {
    requestId = request_id,
    customerId = params.customerId,
    referenceCustomerId = params.referenceCustomerId,
    referenceUserId = params.referenceUserId,
    body = body,
    mask = mask,
    last4 = last4,
    brand = brand,
    expiryTime = string_or_nil(cached.expiryTime),
    paymentMethodType = option.paymentMethodType,
  }
  local created, jerr = j:create(rec)
  if created == nil then
    return nil, journal_error(request_id, jerr, "binding not sent: the journal could not record it")
  end
  if created == false then
    return nil, errors.new{ api = "bindCard", code = errors.REQUEST_ID_REUSED, request_id = request_id,
      message = "requestId is already in the binding journal; use resume_binding" }
  end
  return send_recorded(p, j, rec, false)
end

local function check_id(request_id, who)
  if type(request_id) ~= "string" or request_id == "" then
    error("dws: " .. who .. ": requestId must be a string", 3)
  end
end

-- binding(journal, requestId) -> view | nil (unknown) | nil, err
function M.binding(j, request_id)
  check_id(request_id, "binding")
  local rec, err, kind = j:get(request_id)
  if not rec then
    if err then return nil, journal_error(request_id, err, "cannot read the binding journal", kind) end
    return nil
  end
  return journal.view(rec)
end

-- resume(pipeline, journal, requestId) -> outcome | nil, err
function M.resume(p, j, request_id)
  check_id(request_id, "resume_binding")
  local rec, err, kind = j:get(request_id)
  if not rec then
    if err then return nil, journal_error(request_id, err, "cannot read the binding journal", kind) end
    return nil, errors.new{ api = "bindCard", code = errors.BINDING_NOT_FOUND, request_id = request_id,
      message = "no binding with this requestId in the journal" }
  end
  if journal.FINAL[rec.state] then
    local e = errors.new{ api = "bindCard", code = errors.BINDING_FINAL, request_id = request_id,
      message = "the binding is already " .. rec.state .. "; nothing to resume" }
    e.binding = M.outcome_of(rec)
    return nil, e
  end
  -- ACCEPTED / ACTION_REQUIRED / CONFLICT / UNCONFIRMED: DWS has it; only a notification can tell more.
  if not journal.RESUMABLE[rec.state] then return M.outcome_of(rec) end
  -- The bytes re-sent must be this binding's own request, whatever else the record says.
  local mine, why = journal.body_matches(rec, request_id)
  if not mine then
    p:log("error", "resume_binding: " .. why, { requestId = request_id })
    return nil, journal_error(request_id, why, "", journal.DAMAGED)
  end
  p:log("info", "resume_binding: re-sending the journaled request", { requestId = request_id,
    state = rec.state, sends = rec.sends })
  return send_recorded(p, j, rec, true)
end

-- pending(journal, { older_than = seconds }) -> { binding, ... } | nil, err
function M.pending(j, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("dws: pending_bindings: opts must be a table", 2) end
  local older = opts.older_than or 0
  if type(older) ~= "number" or older < 0 then error("dws: pending_bindings: older_than must be seconds >= 0", 2) end
  local recs, err = j:pending(older)
  if not recs then return nil, journal_error(nil, err, "cannot read the binding journal") end
  local out = {}
  for i, rec in ipairs(recs) do out[i] = journal.view(rec) end
  return out
end

return M
