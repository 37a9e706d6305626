#include "acme/directory.hpp"

#include "acme/internal.hpp"

namespace gatehouse::acme {

namespace {

using internal::json;

directory_meta meta_from_json(const json& object)
{
    directory_meta meta;
    const auto member = object.find("meta");
    if (member == object.end() || !member->is_object()) {
        return meta;
    }
    meta.terms_of_service = internal::optional_string(*member, "termsOfService");
    meta.website = internal::optional_string(*member, "website");
    meta.caa_identities = internal::string_array(*member, "caaIdentities");
    const auto required = member->find("externalAccountRequired");
    meta.external_account_required =
        required != member->end() && required->is_boolean() && required->get<bool>();
    return meta;
}

} // namespace

result<directory> parse_directory(std::string_view text)
{
    auto object = internal::parse_object(text, "directory");
    if (!object) {
        return object.error();
    }

    directory result;
    const std::pair<const char*, std::string*> required[] = {
        {"newNonce", &result.new_nonce},   {"newAccount", &result.new_account},
        {"newOrder", &result.new_order},   {"revokeCert", &result.revoke_cert},
        {"keyChange", &result.key_change},
    };
    for (const auto& [name, field] : required) {
        auto url = internal::required_string(*object, name, "directory");
        if (!url) {
            return url.error();
        }
        *field = std::move(*url);
    }
    result.renewal_info = internal::optional_string(*object, "renewalInfo");
    result.meta = meta_from_json(*object);
    return result;
}

} // namespace gatehouse::acme
