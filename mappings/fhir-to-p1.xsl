<?xml version="1.0" encoding="UTF-8"?>
<!--
  Canonical FHIR R4 (as accepted by cergw) to what P1 / CeR receives: the same
  resources, each declaring the CeR profile it claims (meta.profile, our own
  naming after the draft PLScheduling profiles; P1's official profile names are
  not public) and the gateway message it came from (meta.source). A
  cancellation made less than 48 h before the visit is tagged so that the
  Poczekalnia does not offer the slot again. The engine renders the result as
  FHIR JSON.
  Parameters: $message_key (the delivery's idempotency key), $late_cancel
  ('1' when the rule of 48 h applies).
-->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" xmlns:f="http://hl7.org/fhir"
                exclude-result-prefixes="f">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:param name="message_key" select="''"/>
  <xsl:param name="late_cancel" select="''"/>
  <xsl:variable name="PROFILE_BASE" select="'https://ezdrowie.gov.pl/fhir/StructureDefinition/PLCeR'"/>

  <!-- Only the resources CeR keeps are rebuilt; everything else is copied whole with xsl:copy-of
       (libxslt copies a subtree in one call instead of matching a template per node). -->
  <xsl:template match="/">
    <xsl:apply-templates select="*"/>
  </xsl:template>

  <xsl:template match="f:Bundle">
    <xsl:copy>
      <xsl:copy-of select="@*"/>
      <xsl:for-each select="node()">
        <xsl:choose>
          <xsl:when test="self::f:entry"><xsl:apply-templates select="."/></xsl:when>
          <xsl:otherwise><xsl:copy-of select="."/></xsl:otherwise>
        </xsl:choose>
      </xsl:for-each>
    </xsl:copy>
  </xsl:template>

  <xsl:template match="f:entry">
    <xsl:copy>
      <xsl:copy-of select="@*"/>
      <xsl:for-each select="node()">
        <xsl:choose>
          <xsl:when test="self::f:resource">
            <xsl:copy><xsl:copy-of select="@*"/><xsl:apply-templates select="*"/></xsl:copy>
          </xsl:when>
          <xsl:otherwise><xsl:copy-of select="."/></xsl:otherwise>
        </xsl:choose>
      </xsl:for-each>
    </xsl:copy>
  </xsl:template>

  <!-- the Patient and anything else rides along unchanged -->
  <xsl:template match="*">
    <xsl:copy-of select="."/>
  </xsl:template>

  <!-- the resources CeR keeps get a profile and a source -->
  <xsl:template match="f:Schedule|f:Slot|f:Appointment">
    <xsl:copy>
      <xsl:copy-of select="@*|f:id"/>
      <meta xmlns="http://hl7.org/fhir">
        <xsl:if test="$message_key != ''"><source value="urn:cergw:{$message_key}"/></xsl:if>
        <profile value="{$PROFILE_BASE}{local-name()}"/>
        <xsl:copy-of select="f:meta/f:profile[not(starts-with(@value, $PROFILE_BASE))]|f:meta/f:security|f:meta/f:tag"/>
        <xsl:if test="$late_cancel = '1' and self::f:Appointment and f:status/@value = 'cancelled'">
          <tag>
            <system value="http://cergw.pl/fhir/CodeSystem/poczekalnia"/>
            <code value="not-reassignable"/>
            <display value="odwołanie mniej niż 48 h przed wizytą: termin nie trafia do Poczekalni"/>
          </tag>
        </xsl:if>
      </meta>
      <xsl:copy-of select="node()[not(self::f:id or self::f:meta)]"/>
    </xsl:copy>
  </xsl:template>
</xsl:stylesheet>
